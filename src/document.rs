//! Document numbers: normalisation and parsing into types that can only hold valid numbers.
//!
//! Invariants: a [`TravelPermitNo`] or [`ResidencePermitNo`] exists only if its text passed
//! every rule of DESIGN.md ("Document numbers"); its canonical form is plain ASCII and is
//! what gets hashed. Errors name the rule that failed so the HTTP layer can say which field
//! broke which rule without echoing the number back.

use std::fmt;

use serde::Serialize;

/// Longest input we even look at; anything longer is a length error without further work.
const MAX_INPUT_CHARS: usize = 64;

/// Region a document belongs to. Links are only possible within one region.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::FromRepr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[repr(u8)]
pub enum Region {
    HongKong = 1,
    Macao = 2,
    Taiwan = 3,
}

impl Region {
    /// Residence-permit address code for this region.
    pub fn address_code(self) -> &'static str {
        match self {
            Region::HongKong => "810000",
            Region::Macao => "820000",
            Region::Taiwan => "830000",
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The byte in the snapshot format (docs/snapshot-format.md).
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<Region> {
        Region::from_repr(v)
    }
}

/// What a snapshot record is: one of the two document kinds a number can be, or a
/// temporary electronic permit (keyed by its permit id, never asked for by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::FromRepr)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DocumentKind {
    TravelPermit = 1,
    ResidencePermit = 2,
    TemporaryPermit = 3,
}

impl DocumentKind {
    /// The byte in the snapshot format (docs/snapshot-format.md).
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<DocumentKind> {
        DocumentKind::from_repr(v)
    }
}

/// The rule a document number broke. The string forms are part of the API (`rule` in
/// problem documents) and must stay stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("the number is empty")]
    Empty,
    #[error("the number has the wrong length")]
    Length,
    /// `position` counts characters from 1 in the number as typed, without the spaces
    /// around it: what a person typing it needs to find the slip (a letter O for a zero, a
    /// space inside). One character says nothing of the number.
    #[error(
        "character {position} ({}) is not allowed here{}",
        describe(*code_point),
        hint(*code_point)
    )]
    Characters { position: usize, code_point: u32 },
    #[error("the address code must be 810000 (Hong Kong), 820000 (Macao) or 830000 (Taiwan)")]
    RegionCode,
    #[error("the birth date is not a real date")]
    BirthDate,
    #[error("the check character does not match (ISO 7064 MOD 11-2)")]
    CheckCharacter,
    #[error("the travel permit and the residence permit are from different regions")]
    RegionMismatch,
}

impl NumberError {
    pub fn rule(self) -> &'static str {
        match self {
            NumberError::Empty => "empty",
            NumberError::Length => "length",
            NumberError::Characters { .. } => "characters",
            NumberError::RegionCode => "region_code",
            NumberError::BirthDate => "birth_date",
            NumberError::CheckCharacter => "check_character",
            NumberError::RegionMismatch => "region_mismatch",
        }
    }
}

fn describe(code_point: u32) -> String {
    match char::from_u32(code_point) {
        Some(' ') => "a space".to_owned(),
        Some(c) if c.is_ascii_graphic() => format!("'{c}', U+{code_point:04X}"),
        _ => format!("U+{code_point:04X}"),
    }
}

fn hint(code_point: u32) -> &'static str {
    match char::from_u32(code_point) {
        Some('O') => ": the digit 0, not the letter O?",
        Some('I') | Some('L') => ": the digit 1?",
        Some(' ') => ": type the number without spaces",
        _ => "",
    }
}

/// The error for the character at `index` (from 0) of `b`, a trimmed normalised number.
fn bad_character(b: &[u8], index: usize) -> NumberError {
    NumberError::Characters {
        position: index + 1,
        code_point: u32::from(b.get(index).copied().unwrap_or(b'?')),
    }
}

/// A normalised number, held inline: numbers are short, and a check should not allocate
/// for them. At most `MAX_INPUT_CHARS` ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Normalised {
    buf: [u8; MAX_INPUT_CHARS],
    len: u8,
}

impl Normalised {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into `buf`.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }

    fn truncated(mut self, len: usize) -> Normalised {
        self.len = self.len.min(len as u8);
        self
    }
}

// Masked, as every number type here: these end up in error chains and logs.
impl fmt::Debug for Normalised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Normalised({})", mask(self))
    }
}

impl std::ops::Deref for Normalised {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Trim, upper-case, and fold full-width ASCII (U+FF01..U+FF5E) and the ideographic space to
/// ASCII. Any other non-ASCII character is a `Characters` error.
pub fn normalise(input: &str) -> Result<Normalised, NumberError> {
    let mut buf = [0u8; MAX_INPUT_CHARS];
    let mut len = 0;
    // A character's place as a person counts it: without the spaces before the number.
    let at = |i: usize, c: char| NumberError::Characters {
        position: i + 1
            - input
                .chars()
                .take_while(|c| c.is_whitespace())
                .count()
                .min(i),
        code_point: u32::from(c),
    };
    for (i, c) in input.chars().enumerate() {
        if i >= MAX_INPUT_CHARS {
            return Err(NumberError::Length);
        }
        let c = match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => {
                // The full-width block mirrors ASCII 0x21..0x7E at a fixed offset.
                char::from_u32(c as u32 - 0xFEE0).ok_or_else(|| at(i, c))?
            }
            c if c.is_ascii() => c,
            _ => return Err(at(i, c)),
        };
        // Every character is ASCII here, and there are at most MAX_INPUT_CHARS of them.
        buf[i] = c.to_ascii_uppercase() as u8;
        len = i + 1;
    }
    let start = buf[..len]
        .iter()
        .position(|b| !char::from(*b).is_whitespace())
        .unwrap_or(len);
    let end = buf[..len]
        .iter()
        .rposition(|b| !char::from(*b).is_whitespace())
        .map_or(start, |e| e + 1);
    buf.copy_within(start..end, 0);
    Ok(Normalised {
        buf,
        len: (end - start) as u8,
    })
}

/// Mainland travel permit: `H`/`M` + 8 digits, or 8 digits (Taiwan); either may carry a
/// 2-digit renewal count. The base number identifies the permit; the renewal count the card.
/// Since 2024-07-10 non-Chinese permanent residents of Hong Kong and Macao hold permits
/// numbered `HA`/`MA` + 7 digits (lifelong numbers, no renewal count); they cannot hold a
/// residence permit ([`TravelPermitNo::residence_permit_possible`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TravelPermitNo {
    base: Normalised,
    region: Region,
    renewal: Option<u8>,
    non_chinese: bool,
}

impl TravelPermitNo {
    pub fn parse(input: &str) -> Result<Self, NumberError> {
        let n = normalise(input)?;
        let b = n.as_bytes();
        if b.is_empty() {
            return Err(NumberError::Empty);
        }
        let (region, non_chinese, digits) = match b {
            [b'H', b'A', rest @ ..] => (Region::HongKong, true, rest),
            [b'M', b'A', rest @ ..] => (Region::Macao, true, rest),
            [b'H', rest @ ..] => (Region::HongKong, false, rest),
            [b'M', rest @ ..] => (Region::Macao, false, rest),
            [c, ..] if c.is_ascii_digit() => (Region::Taiwan, false, b),
            _ if !b.is_empty() && b.iter().all(u8::is_ascii_alphanumeric) => {
                return Err(if matches!(b.len(), 9 | 11) {
                    NumberError::RegionCode
                } else {
                    NumberError::Length
                })
            }
            // A character that is neither a letter nor a digit.
            _ => {
                let i = b.iter().position(|c| !c.is_ascii_alphanumeric());
                return Err(bad_character(b, i.unwrap_or(0)));
            }
        };
        if let Some(i) = digits.iter().position(|d| !d.is_ascii_digit()) {
            return Err(bad_character(b, b.len() - digits.len() + i));
        }
        let renewal = match (non_chinese, digits.len()) {
            (true, 7) | (false, 8) => None,
            // ASCII digits were checked above, so this arithmetic cannot overflow.
            (false, 10) => Some((digits[8] - b'0') * 10 + (digits[9] - b'0')),
            _ => return Err(NumberError::Length),
        };
        let base_len = n.len() - if renewal.is_some() { 2 } else { 0 };
        let base = n.truncated(base_len);
        Ok(TravelPermitNo {
            base,
            region,
            renewal,
            non_chinese,
        })
    }

    /// Whether the holder may hold a residence permit at all: not a non-Chinese permanent
    /// resident (`HA`/`MA` numbers).
    pub fn residence_permit_possible(&self) -> bool {
        !self.non_chinese
    }

    /// The canonical base number (without renewal count): what is hashed.
    pub fn canonical(&self) -> &str {
        &self.base
    }

    pub fn region(&self) -> Region {
        self.region
    }

    pub fn renewal(&self) -> Option<u8> {
        self.renewal
    }

    /// `H1234****`: enough for a human to tell two documents apart, not enough to identify.
    pub fn masked(&self) -> String {
        mask(&self.base)
    }
}

/// Residence Permit for Hong Kong, Macao and Taiwan Residents: 18 characters, GB 11643 form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidencePermitNo {
    number: Normalised,
    region: Region,
}

impl ResidencePermitNo {
    pub fn parse(input: &str) -> Result<Self, NumberError> {
        let n = normalise(input)?;
        let b = n.as_bytes();
        if b.is_empty() {
            return Err(NumberError::Empty);
        }
        // Characters before length: a space or a letter O inside is the slip to name.
        let allowed = |(i, d): &(usize, &u8)| d.is_ascii_digit() || (*i == 17 && **d == b'X');
        if let Some((i, _)) = b.iter().enumerate().find(|x| !allowed(x)) {
            return Err(bad_character(b, i));
        }
        if b.len() != 18 {
            return Err(NumberError::Length);
        }
        let region = match &n[..6] {
            "810000" => Region::HongKong,
            "820000" => Region::Macao,
            "830000" => Region::Taiwan,
            _ => return Err(NumberError::RegionCode),
        };
        if !is_real_date(&b[6..14]) {
            return Err(NumberError::BirthDate);
        }
        if check_character(&b[..17]) != b[17] {
            return Err(NumberError::CheckCharacter);
        }
        Ok(ResidencePermitNo { number: n, region })
    }

    pub fn canonical(&self) -> &str {
        &self.number
    }

    pub fn region(&self) -> Region {
        self.region
    }

    pub fn masked(&self) -> String {
        mask(&self.number)
    }
}

/// Either kind of number, for endpoints that accept both (document status, exports).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum DocumentNo {
    Travel(TravelPermitNo),
    Residence(ResidencePermitNo),
}

impl DocumentNo {
    /// Residence permits are the only 18-character numbers, so length decides which rules
    /// apply; the error reported is the one of the kind the input most resembles.
    pub fn parse(input: &str) -> Result<Self, NumberError> {
        let n = normalise(input)?;
        if n.len() == 18 {
            ResidencePermitNo::parse(&n).map(DocumentNo::Residence)
        } else {
            TravelPermitNo::parse(&n).map(DocumentNo::Travel)
        }
    }

    pub fn kind(&self) -> DocumentKind {
        match self {
            DocumentNo::Travel(_) => DocumentKind::TravelPermit,
            DocumentNo::Residence(_) => DocumentKind::ResidencePermit,
        }
    }

    pub fn canonical(&self) -> &str {
        match self {
            DocumentNo::Travel(t) => t.canonical(),
            DocumentNo::Residence(r) => r.canonical(),
        }
    }

    pub fn region(&self) -> Region {
        match self {
            DocumentNo::Travel(t) => t.region(),
            DocumentNo::Residence(r) => r.region(),
        }
    }

    pub fn renewal(&self) -> Option<u8> {
        match self {
            DocumentNo::Travel(t) => t.renewal(),
            DocumentNo::Residence(_) => None,
        }
    }

    pub fn masked(&self) -> String {
        mask(self.canonical())
    }
}

// Debug must never print a number in full: these types end up in error chains and logs.
impl fmt::Debug for TravelPermitNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TravelPermitNo({})", self.masked())
    }
}

impl fmt::Debug for ResidencePermitNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidencePermitNo({})", self.masked())
    }
}

impl fmt::Debug for DocumentNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocumentNo::Travel(t) => t.fmt(f),
            DocumentNo::Residence(r) => r.fmt(f),
        }
    }
}

/// Keep the first five characters, star the rest.
pub fn mask(canonical: &str) -> String {
    let keep = canonical.len().min(5);
    let mut s = String::with_capacity(canonical.len());
    s.push_str(&canonical[..keep]);
    s.extend(std::iter::repeat_n('*', canonical.len() - keep));
    s
}

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: &[u8; 11] = b"10X98765432";

/// ISO 7064 MOD 11-2 check character of the first 17 digits (ASCII).
pub fn check_character(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d.wrapping_sub(b'0')) * w)
        .sum();
    CHECK_CHARS[(sum % 11) as usize]
}

/// `YYYYMMDD` (ASCII digits) names a real Gregorian date from 1900 on.
fn is_real_date(d: &[u8]) -> bool {
    let num = |s: &[u8]| {
        s.iter()
            .fold(0u32, |acc, c| acc * 10 + u32::from(c.wrapping_sub(b'0')))
    };
    let (y, m, day) = (num(&d[..4]), num(&d[4..6]), num(&d[6..8]));
    if y < 1900 || !(1..=12).contains(&m) || day == 0 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days_in_month
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors computed independently (by hand, and with the Python one-liner in
    // docs/snapshot-format.md), not by this code.
    const VALID_RP: &[&str] = &[
        "810000199001011230",
        "820000198512310010",
        "830000200002290023",
        "810000197002030012",
    ];

    #[test]
    fn valid_residence_permits_parse() {
        for n in VALID_RP {
            let p = ResidencePermitNo::parse(n).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(p.canonical(), *n);
        }
        assert_eq!(
            ResidencePermitNo::parse(VALID_RP[1]).map(|p| p.region()),
            Ok(Region::Macao)
        );
    }

    #[test]
    fn residence_permit_rules() {
        let cases = [
            ("81000019900101123", NumberError::Length),
            ("8100001990010112300", NumberError::Length),
            (
                "81000019900101123A",
                NumberError::Characters {
                    position: 18,
                    code_point: 65,
                },
            ),
            (
                "8100001990O1011230",
                NumberError::Characters {
                    position: 11,
                    code_point: 79,
                },
            ),
            // A space inside is named, not counted as a wrong length.
            (
                "810000 199001011230",
                NumberError::Characters {
                    position: 7,
                    code_point: 32,
                },
            ),
            (
                "  8100001990O1011230",
                NumberError::Characters {
                    position: 11,
                    code_point: 79,
                },
            ),
            ("", NumberError::Empty),
            ("110000199001011230", NumberError::RegionCode),
            ("81000019900230123X", NumberError::BirthDate),
            ("810000190002290000", NumberError::BirthDate),
            ("810000189912310000", NumberError::BirthDate),
            ("810000199001011231", NumberError::CheckCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(
                ResidencePermitNo::parse(input).err(),
                Some(want),
                "input {input}"
            );
        }
    }

    #[test]
    fn travel_permits() {
        let h = TravelPermitNo::parse("h12345678").expect("valid");
        assert_eq!(
            (h.canonical(), h.region(), h.renewal()),
            ("H12345678", Region::HongKong, None)
        );
        let m = TravelPermitNo::parse(" M8765432103 ").expect("valid");
        assert_eq!(
            (m.canonical(), m.region(), m.renewal()),
            ("M87654321", Region::Macao, Some(3))
        );
        let t = TravelPermitNo::parse("01234567").expect("valid");
        assert_eq!((t.canonical(), t.region()), ("01234567", Region::Taiwan));
        assert!(h.residence_permit_possible() && t.residence_permit_possible());
        // Non-Chinese permanent residents of Hong Kong and Macao (since 2024-07-10).
        for (input, canonical, region) in [
            ("HA1234567", "HA1234567", Region::HongKong),
            (" ma7654321\u{3000}", "MA7654321", Region::Macao),
            ("ＨＡ１２３４５６７", "HA1234567", Region::HongKong),
        ] {
            let p = TravelPermitNo::parse(input).expect(input);
            assert_eq!(
                (p.canonical(), p.region(), p.renewal()),
                (canonical, region, None),
                "{input:?}"
            );
            assert!(!p.residence_permit_possible(), "{input:?}");
            assert_eq!(p.masked(), format!("{}****", &canonical[..5]));
        }
        let cases = [
            ("HA123456", NumberError::Length),
            ("HA12345678", NumberError::Length),
            ("HA123456701", NumberError::Length),
            (
                "HB1234567",
                NumberError::Characters {
                    position: 2,
                    code_point: 66,
                },
            ),
            (
                "HA12345X7",
                NumberError::Characters {
                    position: 8,
                    code_point: 88,
                },
            ),
            ("H1234567", NumberError::Length),
            ("H123456789", NumberError::Length),
            ("X12345678", NumberError::RegionCode),
            (
                "H1234567A",
                NumberError::Characters {
                    position: 9,
                    code_point: 65,
                },
            ),
            (
                "H1234 5678",
                NumberError::Characters {
                    position: 6,
                    code_point: 32,
                },
            ),
            (
                "h1234o678",
                NumberError::Characters {
                    position: 6,
                    code_point: 79,
                },
            ),
            (
                "H1234-5678",
                NumberError::Characters {
                    position: 6,
                    code_point: 45,
                },
            ),
            ("", NumberError::Empty),
            ("   ", NumberError::Empty),
            ("1234567", NumberError::Length),
        ];
        for (input, want) in cases {
            assert_eq!(
                TravelPermitNo::parse(input).err(),
                Some(want),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn full_width_input_is_folded() {
        let fw = "Ｈ１２３４５６７８";
        assert_eq!(
            TravelPermitNo::parse(fw).map(|t| t.canonical().to_owned()),
            Ok("H12345678".to_owned())
        );
        let text = |s: &str| normalise(s).map(|n| n.as_str().to_owned());
        assert_eq!(text("\u{3000}ｍ１\u{3000}"), Ok("M1".to_owned()));
        assert_eq!(text(" \t\u{0B}h1 "), Ok("H1".to_owned()));
        assert_eq!(text("   "), Ok(String::new()));
        assert_eq!(
            normalise(" H１２３４５６７８é"),
            Err(NumberError::Characters {
                position: 10,
                code_point: u32::from('é')
            })
        );
        assert_eq!(normalise(&"1".repeat(65)), Err(NumberError::Length));
    }

    #[test]
    fn document_no_dispatches_on_length() {
        assert_eq!(
            DocumentNo::parse(VALID_RP[0]).map(|d| d.kind()),
            Ok(DocumentKind::ResidencePermit)
        );
        assert_eq!(
            DocumentNo::parse("H12345678").map(|d| d.kind()),
            Ok(DocumentKind::TravelPermit)
        );
    }

    #[test]
    fn debug_and_mask_hide_the_number() {
        let p = ResidencePermitNo::parse(VALID_RP[0]).expect("valid");
        let dbg = format!("{p:?}");
        assert!(!dbg.contains(VALID_RP[0]), "{dbg}");
        assert_eq!(p.masked(), "81000*************");
        assert_eq!(mask("H1234"), "H1234");
    }

    fn first17() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["810000", "820000", "830000"]),
            1900u32..2100,
            1u32..=12,
            1u32..=28,
            0u32..1000,
        )
            .prop_map(|(r, y, m, d, s)| format!("{r}{y:04}{m:02}{d:02}{s:03}"))
    }

    proptest! {
        #[test]
        fn appended_check_character_always_validates(f in first17()) {
            let c = check_character(f.as_bytes()) as char;
            let n = format!("{f}{c}");
            prop_assert!(ResidencePermitNo::parse(&n).is_ok());
        }

        #[test]
        fn any_single_digit_change_is_detected(f in first17(), pos in 6usize..17, delta in 1u8..10) {
            let c = check_character(f.as_bytes());
            let mut b = f.into_bytes();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            // MOD 11-2 detects every single-digit substitution.
            prop_assert_ne!(check_character(&b), c);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = DocumentNo::parse(&s);
        }
    }
}
