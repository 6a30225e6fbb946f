//! An error and its causes on one line (`what: why: why`), for logs and for details that
//! travel as text. Errors say what failed and keep their cause as `source` (never in their
//! own message), so that the cause is printed once; the binary prints anyhow's `{:#}`,
//! which reads the same.

use std::error::Error;
use std::fmt;

pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once_in_order() {
        let e = crate::snapshot::SnapshotError::Corrupt {
            kind: crate::snapshot::FileKind::Delta,
            cause: crate::snapshot::Corruption::OutOfOrder(3),
        };
        assert_eq!(
            Report(&e).to_string(),
            "delta is corrupt: record 3 is out of order or duplicated"
        );
    }
}
