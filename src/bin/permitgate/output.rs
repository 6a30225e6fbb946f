//! What several subcommands share: writing to standard output, times and document numbers
//! as the command line reads and prints them.

use std::io::Write as _;

use anyhow::Context;
use time::OffsetDateTime;

use permitgate::checks::DocumentPair;
use permitgate::document::{NumberError, ResidencePermitNo, TravelPermitNo};

/// Writes to standard output; a reader that stopped reading (`| head -1`) is not an
/// error (println! would panic on the broken pipe).
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// RFC 3339 for Unix seconds, or the number itself where it is out of range.
pub fn unix_time_text(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .map(permitgate::day::rfc3339)
        .unwrap_or_else(|_| secs.to_string())
}

/// clap's parser for RFC 3339 arguments.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    permitgate::day::parse_rfc3339(s)
        .ok_or_else(|| "must be an RFC 3339 time such as 2026-11-25T08:00:00Z".to_owned())
}

/// A number from the command line; the error names the argument and the rule, never the
/// number.
pub fn number<T>(
    arg: &str,
    text: &str,
    parse: fn(&str) -> Result<T, NumberError>,
) -> anyhow::Result<T> {
    parse(text).map_err(|e| anyhow::anyhow!("--{arg} breaks rule {}: {e}", e.rule()))
}

/// `--travel-permit` and `--residence-permit` as a pair of one region.
pub fn pair(tp: &str, rp: &str) -> anyhow::Result<DocumentPair> {
    let tp = number("travel-permit", tp, TravelPermitNo::parse)?;
    let rp = number("residence-permit", rp, ResidencePermitNo::parse)?;
    DocumentPair::new(tp, rp)
        .map_err(|e| anyhow::anyhow!("--residence-permit breaks rule {}: {e}", e.rule()))
}

/// The paper and font of a printable page.
#[cfg(feature = "tools")]
#[derive(clap::Args, Clone)]
pub struct Printing {
    /// A PDF's paper: a4 or a6 (a PNG is sized to its content).
    #[arg(long, default_value = "a4")]
    pub paper: Paper,
    /// A TrueType font with Chinese and Latin.
    #[arg(long, default_value = permitgate::printable::DEFAULT_FONT)]
    pub font: std::path::PathBuf,
}

#[cfg(feature = "tools")]
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Paper {
    A4,
    A6,
}

/// Writes `page` to `out` as a PDF or a PNG, by the file's extension (`arg` names the
/// argument in the error).
#[cfg(feature = "tools")]
pub fn write_printable(
    page: &permitgate::printable::Page,
    out: &std::path::Path,
    arg: &str,
    printing: &Printing,
) -> anyhow::Result<()> {
    use permitgate::printable;
    let pdf = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("pdf") => true,
        Some(e) if e.eq_ignore_ascii_case("png") => false,
        _ => anyhow::bail!("{arg} must end in .pdf or .png"),
    };
    let font = printable::Font::load(&printing.font)?;
    let bytes = if pdf {
        let paper = match printing.paper {
            Paper::A4 => printable::Paper::A4,
            Paper::A6 => printable::Paper::A6,
        };
        printable::pdf_on(page, &font, paper)?
    } else {
        printable::png(page, &font)?
    };
    std::fs::write(out, bytes).with_context(|| out.display().to_string())
}

/// `println!` through [`emit`]: a standard output closed by its reader (`| head`) ends
/// the command quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use out;
