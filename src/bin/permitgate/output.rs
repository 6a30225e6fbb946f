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
