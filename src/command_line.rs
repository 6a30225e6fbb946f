//! What every command line of the project does with its arguments: clap parses them, and a
//! mistake becomes one line on standard error with exit status 2 (help and version exit 0).

use std::process::ExitCode;

/// Parses the process's arguments into `P`, or says why not and returns the exit code.
pub fn parse_args<P: clap::Parser>() -> Result<P, ExitCode> {
    match P::try_parse() {
        Ok(p) => Ok(p),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            // clap's message spans lines (what is wrong, then usage); keep the part before
            // the usage, on one line.
            let msg = e.render().to_string();
            let what: Vec<&str> = msg
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{} (see --help)", what.join(" "));
            Err(ExitCode::from(2))
        }
    }
}
