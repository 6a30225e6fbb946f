//! A person's name as it is signed into a receipt or a temporary permit, printed on paper
//! and shown by the verifier page: one rule, applied when a name is taken and again when a
//! signed object is read. The verifier page applies the same rule in JavaScript
//! (src/verify_site/page/verify.js); tests/vectors/names.json holds inputs on which the
//! two must agree.
//!
//! A name is trimmed of white space (Unicode's White_Space, exactly: not JavaScript's
//! `trim`, which also takes U+FEFF), normalised to NFC, and may then hold only letters,
//! combining marks, space separators and the punctuation names are written with. Format
//! characters (Unicode Cf: bidi overrides, zero-width spaces, U+FEFF) would let a name show
//! one thing on a page and another on paper; symbols (a check mark) would let it mimic a
//! verdict; digits would let it mimic a document number. All are refused, and so are
//! control characters.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Longest name, in bytes of UTF-8 (after normalisation).
pub const MAX_NAME_BYTES: usize = 100;

/// Punctuation a name may hold besides letters, marks and spaces: hyphen, apostrophes,
/// full stop, middle dots (Chinese and Japanese transliterations), comma, parentheses
/// (also full-width: an organisation's Chinese name).
pub const NAME_PUNCTUATION: &[char] = &[
    '-', '\'', '\u{2019}', '.', '\u{b7}', '\u{30fb}', '\u{2027}', ',', '(', ')', '\u{ff08}',
    '\u{ff09}',
];

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_NAME_BYTES} bytes of UTF-8")]
    TooLong,
    /// `position` counts characters from 1, in the trimmed and normalised name.
    #[error(
        "has a character a name cannot hold at position {position} (U+{code_point:04X}): \
         letters, marks, spaces and - ' ’ . · ・ ‧ , ( ) （ ） only"
    )]
    Character { position: usize, code_point: u32 },
}

impl NameError {
    /// The `rule` of the problem document.
    pub fn rule(self) -> &'static str {
        match self {
            NameError::Empty => "empty",
            NameError::TooLong => "length",
            NameError::Character { .. } => "characters",
        }
    }
}

fn allowed(c: char) -> bool {
    match c.general_category_group() {
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Mark => true,
        _ => {
            c.general_category() == unicode_properties::GeneralCategory::SpaceSeparator
                || NAME_PUNCTUATION.contains(&c)
        }
    }
}

/// The name as it is signed: trimmed, NFC, each character allowed, at most
/// [`MAX_NAME_BYTES`].
pub fn normalize(input: &str) -> Result<String, NameError> {
    let name: String = input.trim_matches(char::is_whitespace).nfc().collect();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((i, c)) = name.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        return Err(NameError::Character {
            position: i + 1,
            code_point: u32::from(c),
        });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    Ok(name)
}

/// Whether a name read from a signed object is one [`normalize`] would have signed.
pub fn is_signed_form(name: &str) -> bool {
    normalize(name).is_ok_and(|n| n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_composed_and_kept_to_name_characters() {
        assert_eq!(
            normalize(" 陳大文 CHAN Tai Man\u{3000}").as_deref(),
            Ok("陳大文 CHAN Tai Man")
        );
        // Decomposed é composed.
        assert_eq!(normalize("Jose\u{301}").as_deref(), Ok("Jos\u{e9}"));
        assert_eq!(
            normalize("O'Brien-Smith, Jr.").as_deref(),
            Ok("O'Brien-Smith, Jr.")
        );
        assert_eq!(normalize("Nguyễn Văn An").as_deref(), Ok("Nguyễn Văn An"));
        for (bad, want) in [
            ("", NameError::Empty),
            (" \t ", NameError::Empty),
            (
                "CHAN Tai Man\u{feff}",
                NameError::Character {
                    position: 13,
                    code_point: 0xfeff,
                },
            ),
            (
                "\u{202e}NAM IAT NAHC",
                NameError::Character {
                    position: 1,
                    code_point: 0x202e,
                },
            ),
            (
                "CHAN\u{200b}Tai",
                NameError::Character {
                    position: 5,
                    code_point: 0x200b,
                },
            ),
            (
                "\u{2714} 关联一致 Linked",
                NameError::Character {
                    position: 1,
                    code_point: 0x2714,
                },
            ),
            (
                "CHAN\tTai",
                NameError::Character {
                    position: 5,
                    code_point: 9,
                },
            ),
            (
                "H12345678",
                NameError::Character {
                    position: 2,
                    code_point: 0x31,
                },
            ),
        ] {
            assert_eq!(normalize(bad), Err(want), "{bad:?}");
        }
        assert_eq!(normalize(&"名".repeat(34)), Err(NameError::TooLong));
        assert!(normalize(&"名".repeat(33)).is_ok());
        assert!(is_signed_form("陳大文 CHAN Tai Man"));
        assert!(!is_signed_form(" CHAN"));
        assert!(!is_signed_form("Jose\u{301}"));
    }
}
