//! Printable forms: QR codes and one-page documents as PNG or PDF.
//!
//! The paper form of a receipt (what an immigration office hands out) and the QR code of
//! a temporary permit. QR codes use error correction level M; their text is base45, so
//! the encoder picks alphanumeric mode. Text is set in one TrueType font that covers
//! Chinese and Latin (by default Debian's fonts-wqy-microhei: [`DEFAULT_FONT`]): rasterized
//! into the PNG, and embedded in the PDF as a subset (the glyphs the page uses, with a
//! ToUnicode map so that the text can be searched and copied), so the PDF shows the same
//! everywhere. The QR code is drawn as vector squares that print sharp at any size.

use std::path::Path;

use ab_glyph::{Font as _, ScaleFont as _};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use qrcode::{Color, EcLevel, QrCode};

/// Debian's `fonts-wqy-microhei`: Chinese and Latin in one TrueType collection.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the text does not fit a QR code")]
    Qr(#[source] qrcode::types::QrError),
    #[error("cannot encode the PNG")]
    Png(#[source] png::EncodingError),
    #[error("cannot read the font {}", path.display())]
    FontFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a TrueType font (or collection) this can use", path.display())]
    NotAFont { path: std::path::PathBuf },
    #[error("cannot subset the font for the PDF: {0:?}")]
    Subset(subsetter::Error),
}

/// A TrueType font (the first face of a collection), for text of any script it covers.
pub struct Font {
    data: Vec<u8>,
    index: u32,
}

impl Font {
    pub fn load(path: &Path) -> Result<Font, RenderError> {
        let data = std::fs::read(path).map_err(|source| RenderError::FontFile {
            path: path.to_owned(),
            source,
        })?;
        let font = Font { data, index: 0 };
        font.face().ok_or_else(|| RenderError::NotAFont {
            path: path.to_owned(),
        })?;
        ab_glyph::FontRef::try_from_slice_and_index(&font.data, font.index).map_err(|_| {
            RenderError::NotAFont {
                path: path.to_owned(),
            }
        })?;
        Ok(font)
    }

    fn face(&self) -> Option<ttf_parser::Face<'_>> {
        ttf_parser::Face::parse(&self.data, self.index).ok()
    }

    fn raster(&self) -> Option<ab_glyph::FontRef<'_>> {
        ab_glyph::FontRef::try_from_slice_and_index(&self.data, self.index).ok()
    }
}

/// A one-page document: a title (one line per language), labelled rows, a note, a QR code
/// under them and its caption (the address to type) under the code.
#[derive(Debug, Clone)]
pub struct Page {
    pub title: Vec<String>,
    pub rows: Vec<(String, String)>,
    pub note: String,
    pub qr_text: String,
    pub qr_caption: Vec<String>,
}

/// Dark modules of a QR code, row by row, and its width in modules.
struct Modules {
    width: usize,
    dark: Vec<bool>,
}

/// Light modules around the code that scanners need.
const QUIET_ZONE: usize = 4;

fn modules(text: &str) -> Result<Modules, RenderError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(RenderError::Qr)?;
    Ok(Modules {
        width: code.width(),
        dark: code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect(),
    })
}

/// A grey-scale picture, white to start with.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![255; width * height],
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize) {
        for row in y..(y + h).min(self.height) {
            let start = row * self.width;
            for px in &mut self.pixels[start + x.min(self.width)..start + (x + w).min(self.width)] {
                *px = 0;
            }
        }
    }

    fn draw_qr(&mut self, m: &Modules, x0: usize, y0: usize, scale: usize) {
        for (i, _) in m.dark.iter().enumerate().filter(|(_, d)| **d) {
            let (mx, my) = (i % m.width, i / m.width);
            self.fill(
                x0 + (QUIET_ZONE + mx) * scale,
                y0 + (QUIET_ZONE + my) * scale,
                scale,
                scale,
            );
        }
    }

    fn png(&self) -> Result<Vec<u8>, RenderError> {
        let err = RenderError::Png;
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&self.pixels).map_err(err)?;
        w.finish().map_err(err)?;
        Ok(out)
    }
}

/// A QR code alone, `scale` pixels per module.
pub fn qr_png(text: &str, scale: usize) -> Result<Vec<u8>, RenderError> {
    let m = modules(text)?;
    let side = (m.width + 2 * QUIET_ZONE) * scale;
    let mut c = Canvas::new(side, side);
    c.draw_qr(&m, 0, 0, scale);
    c.png()
}

impl Canvas {
    /// Draws `text` with its top-left corner at (`x`, `y`), `size` pixels high; returns the
    /// width drawn. Glyphs the font lacks are left out.
    fn text(&mut self, font: &ab_glyph::FontRef<'_>, size: f32, x: f32, y: f32, text: &str) -> f32 {
        let scaled = font.as_scaled(size);
        let baseline = y + scaled.ascent();
        let mut caret = x;
        for c in text.chars() {
            let mut glyph = scaled.scaled_glyph(c);
            glyph.position = ab_glyph::point(caret, baseline);
            caret += scaled.h_advance(glyph.id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let (w, h) = (self.width, self.height);
            let pixels = &mut self.pixels;
            outline.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + i64::from(gx);
                let py = bounds.min.y as i64 + i64::from(gy);
                if let (Ok(px), Ok(py)) = (usize::try_from(px), usize::try_from(py)) {
                    if px < w && py < h {
                        let ink = 255 - (coverage.clamp(0.0, 1.0) * 255.0) as u8;
                        let p = &mut pixels[py * w + px];
                        *p = (*p).min(ink);
                    }
                }
            });
        }
        caret - x
    }
}

/// The width of `text` at `size` pixels.
fn text_width(font: &ab_glyph::FontRef<'_>, size: f32, text: &str) -> f32 {
    let scaled = font.as_scaled(size);
    text.chars()
        .map(|c| scaled.h_advance(font.glyph_id(c)))
        .sum()
}

pub fn png(page: &Page, font: &Font) -> Result<Vec<u8>, RenderError> {
    const MARGIN: f32 = 40.0;
    const TITLE: f32 = 26.0;
    const TEXT: f32 = 20.0;
    const LINE: f32 = 30.0;
    const SCALE: usize = 4;
    let raster = font.raster().ok_or(RenderError::NotAFont {
        path: "<font>".into(),
    })?;
    let m = modules(&page.qr_text)?;
    let qr_side = (m.width + 2 * QUIET_ZONE) * SCALE;
    let label_width = page
        .rows
        .iter()
        .map(|(l, _)| text_width(&raster, TEXT, l))
        .fold(0.0, f32::max)
        + 24.0;
    let text_width = page
        .title
        .iter()
        .map(|t| text_width(&raster, TITLE, t))
        .chain(
            page.rows
                .iter()
                .map(|(_, v)| label_width + text_width(&raster, TEXT, v)),
        )
        .chain(
            std::iter::once(&page.note)
                .chain(&page.qr_caption)
                .map(|t| text_width(&raster, TEXT, t)),
        )
        .fold(0.0, f32::max);
    let text_height =
        (page.title.len() as f32 + 0.5) * LINE * 1.3 + (page.rows.len() + 2) as f32 * LINE;
    let caption_height = page.qr_caption.len() as f32 * LINE;
    let width = (2.0 * MARGIN + text_width.max(qr_side as f32)).ceil() as usize;
    let height = (2.0 * MARGIN + text_height + caption_height).ceil() as usize + qr_side;
    let mut c = Canvas::new(width, height);
    let mut y = MARGIN;
    for t in &page.title {
        c.text(&raster, TITLE, MARGIN, y, t);
        y += LINE * 1.3;
    }
    y += LINE * 0.5;
    for (label, value) in &page.rows {
        c.text(&raster, TEXT, MARGIN, y, label);
        c.text(&raster, TEXT, MARGIN + label_width, y, value);
        y += LINE;
    }
    y += LINE;
    c.text(&raster, TEXT, MARGIN, y, &page.note);
    c.draw_qr(&m, MARGIN as usize, (MARGIN + text_height) as usize, SCALE);
    let mut y = MARGIN + text_height + qr_side as f32;
    for line in &page.qr_caption {
        c.text(&raster, TEXT, MARGIN, y, line);
        y += LINE;
    }
    c.png()
}

/// The page's text as glyphs of a subset of `font`: the subset (a TrueType file), each
/// glyph's width in PDF units, the text each new glyph stands for, and a function that turns
/// a string into the glyph ids (two bytes each) the content stream shows.
struct Subset {
    file: Vec<u8>,
    widths: Vec<f32>,
    unicode: Vec<(u16, char)>,
    ascent: f32,
    descent: f32,
    cap_height: f32,
    bbox: Rect,
}

impl Subset {
    fn of(font: &Font, texts: &[&str]) -> Result<(Subset, subsetter::GlyphRemapper), RenderError> {
        let face = font.face().ok_or(RenderError::NotAFont {
            path: "<font>".into(),
        })?;
        let per_em = f32::from(face.units_per_em());
        let pdf_units = |v: f32| v * 1000.0 / per_em;
        let mut remapper = subsetter::GlyphRemapper::new();
        let mut unicode = Vec::new();
        let mut widths = vec![face
            .glyph_hor_advance(ttf_parser::GlyphId(0))
            .map_or(0.0, |a| pdf_units(f32::from(a)))];
        for c in texts.iter().flat_map(|t| t.chars()) {
            let Some(gid) = face.glyph_index(c) else {
                continue;
            };
            if remapper.get(gid.0).is_some() {
                continue;
            }
            let new = remapper.remap(gid.0);
            unicode.push((new, c));
            let advance = face
                .glyph_hor_advance(gid)
                .map_or(0.0, |a| pdf_units(f32::from(a)));
            if usize::from(new) >= widths.len() {
                widths.resize(usize::from(new) + 1, 0.0);
            }
            widths[usize::from(new)] = advance;
        }
        let file =
            subsetter::subset(&font.data, font.index, &remapper).map_err(RenderError::Subset)?;
        let b = face.global_bounding_box();
        Ok((
            Subset {
                file,
                widths,
                unicode,
                ascent: pdf_units(f32::from(face.ascender())),
                descent: pdf_units(f32::from(face.descender())),
                cap_height: pdf_units(f32::from(face.capital_height().unwrap_or(face.ascender()))),
                bbox: Rect::new(
                    pdf_units(f32::from(b.x_min)),
                    pdf_units(f32::from(b.y_min)),
                    pdf_units(f32::from(b.x_max)),
                    pdf_units(f32::from(b.y_max)),
                ),
            },
            remapper,
        ))
    }
}

/// The paper a PDF is set on: A4 for an office's printer, A6 for a card a holder carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paper {
    #[default]
    A4,
    A6,
}

/// Where things go on a page of one paper size, in points.
struct Layout {
    size: (f32, f32),
    margin: f32,
    title: f32,
    title_line: f32,
    text: f32,
    line: f32,
    label_width: f32,
    qr_side: f32,
}

impl Paper {
    fn layout(self) -> Layout {
        match self {
            Paper::A4 => Layout {
                size: (595.0, 842.0),
                margin: 56.0,
                title: 15.0,
                title_line: 22.0,
                text: 10.5,
                line: 18.0,
                label_width: 150.0,
                qr_side: 200.0,
            },
            Paper::A6 => Layout {
                size: (298.0, 420.0),
                margin: 18.0,
                title: 8.5,
                title_line: 12.0,
                text: 6.5,
                line: 10.0,
                label_width: 88.0,
                qr_side: 150.0,
            },
        }
    }
}

/// The page as a PDF on A4.
pub fn pdf(page: &Page, font: &Font) -> Result<Vec<u8>, RenderError> {
    pdf_on(page, font, Paper::A4)
}

/// The page as a PDF on `paper`.
pub fn pdf_on(page: &Page, font: &Font, paper: Paper) -> Result<Vec<u8>, RenderError> {
    let l = paper.layout();
    let (size, margin) = (l.size, l.margin);
    let m = modules(&page.qr_text)?;
    let texts: Vec<&str> = page
        .title
        .iter()
        .map(String::as_str)
        .chain(page.rows.iter().flat_map(|(l, v)| [l.as_str(), v.as_str()]))
        .chain(std::iter::once(page.note.as_str()))
        .chain(page.qr_caption.iter().map(String::as_str))
        .collect();
    let face = font.face().ok_or(RenderError::NotAFont {
        path: "<font>".into(),
    })?;
    let (subset, remapper) = Subset::of(font, &texts)?;
    let glyphs = |text: &str| -> Vec<u8> {
        text.chars()
            .filter_map(|c| face.glyph_index(c))
            .filter_map(|g| remapper.get(g.0))
            .flat_map(u16::to_be_bytes)
            .collect()
    };
    let (catalog, tree, page_id, type0, cid, descriptor, file, cmap, content_id) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
        Ref::new(7),
        Ref::new(8),
        Ref::new(9),
    );
    let font_name = Name(b"F1");
    // A subset's name starts with a six-letter tag.
    let base = Name(b"PGSUBS+PermitgateCJK");
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page_id]).count(1);
    let mut p = pdf.page(page_id);
    p.media_box(Rect::new(0.0, 0.0, size.0, size.1));
    p.parent(tree);
    p.contents(content_id);
    p.resources().fonts().pair(font_name, type0);
    drop(p);
    pdf.type0_font(type0)
        .base_font(base)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid)
        .to_unicode(cmap);
    let info = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    let mut c = pdf.cid_font(cid);
    c.subtype(CidFontType::Type2)
        .base_font(base)
        .system_info(info)
        .font_descriptor(descriptor)
        .default_width(0.0)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    c.widths().consecutive(0, subset.widths.iter().copied());
    drop(c);
    pdf.font_descriptor(descriptor)
        .name(base)
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(subset.bbox)
        .italic_angle(0.0)
        .ascent(subset.ascent)
        .descent(subset.descent)
        .cap_height(subset.cap_height)
        .stem_v(80.0)
        .font_file2(file);
    pdf.stream(file, &subset.file)
        .pair(Name(b"Length1"), subset.file.len() as i32);
    let mut to_unicode = UnicodeCmap::new(Name(b"Permitgate-UTF16"), info);
    for (gid, c) in &subset.unicode {
        to_unicode.pair(*gid, *c);
    }
    pdf.cmap(cmap, &to_unicode.finish());

    let mut content = Content::new();
    let show = |content: &mut Content, size: f32, x: f32, y: f32, text: &str| {
        content.begin_text();
        content.set_font(font_name, size);
        content.next_line(x, y);
        content.show(Str(&glyphs(text)));
        content.end_text();
    };
    let mut y = size.1 - margin;
    for t in &page.title {
        show(&mut content, l.title, margin, y, t);
        y -= l.title_line;
    }
    y -= l.line * 0.8;
    for (label, value) in &page.rows {
        show(&mut content, l.text, margin, y, label);
        show(&mut content, l.text, margin + l.label_width, y, value);
        y -= l.line;
    }
    y -= l.line;
    show(&mut content, l.text, margin, y, &page.note);
    y -= l.line;
    // The QR code: a square under the text, quiet zone included.
    let side = l.qr_side;
    let module = side / (m.width + 2 * QUIET_ZONE) as f32;
    let (x0, top) = (margin, y - l.line * 0.6);
    for (i, _) in m.dark.iter().enumerate().filter(|(_, d)| **d) {
        let (mx, my) = (
            (i % m.width + QUIET_ZONE) as f32,
            (i / m.width + QUIET_ZONE) as f32,
        );
        content.rect(x0 + mx * module, top - (my + 1.0) * module, module, module);
    }
    content.fill_nonzero();
    let mut y = top - side - 4.0;
    for line in &page.qr_caption {
        show(&mut content, l.text, margin, y, line);
        y -= l.line;
    }
    pdf.stream(content_id, &content.finish());
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> i16 {
        match QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .expect("fits")
            .version()
        {
            qrcode::Version::Normal(v) => v,
            qrcode::Version::Micro(v) => -v,
        }
    }

    /// The QR versions docs/receipts.md reports: a receipt link as the demo prints it, and
    /// the largest one the formats allow (64-character partner id, 100-byte holder name,
    /// the longest display names, 200-character verify_url) still fits, far from QR's
    /// limit (version 40).
    #[test]
    fn receipt_links_fit_a_qr_code() {
        use crate::checks::{DocumentPair, LinkAnswer, LinkResult};
        use crate::document::{ResidencePermitNo, TravelPermitNo};
        use crate::receipt::{issue, verify_link, Issue};
        let pair = DocumentPair::new(
            TravelPermitNo::parse("H12345678").expect("tp"),
            ResidencePermitNo::parse("810000199001011230").expect("rp"),
        )
        .expect("pair");
        let answer = LinkAnswer {
            result: LinkResult::Linked,
            travel_permit: None,
            residence_permit: None,
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let demo_name = crate::partner::DisplayName {
            zh: Some("演示银行（非真实机构）".into()),
            en: Some("Demo Bank (not a real bank)".into()),
        };
        let longest_name = crate::partner::DisplayName {
            zh: Some("银".repeat(crate::partner::DISPLAY_NAME_ZH_MAX)),
            en: Some("B".repeat(crate::partner::DISPLAY_NAME_EN_MAX)),
        };
        let receipt = |partner: &str, holder_name: Option<&str>, partner_name| {
            let what = Issue {
                partner,
                partner_name,
                snapshot_version: 1,
                checked_at: time::OffsetDateTime::UNIX_EPOCH,
                holder_name,
            };
            issue(what, &pair, &answer, &key).0
        };
        let demo = verify_link(
            "http://127.0.0.1:8080/verify/",
            &receipt("bank", None, &demo_name),
        );
        let named = verify_link(
            "http://127.0.0.1:8080/verify/",
            &receipt("bank", Some("陳大文 CHAN Tai Man"), &demo_name),
        );
        let url = format!("https://{}/", "v".repeat(191));
        let largest = verify_link(
            &url,
            &receipt(&"p".repeat(64), Some(&"陳".repeat(33)), &longest_name),
        );
        // Each receipt's random id changes its text, and so the QR version, by one at most.
        assert!((10..=11).contains(&version(&demo)), "{}", version(&demo));
        assert!((11..=12).contains(&version(&named)), "{}", version(&named));
        assert!(version(&largest) <= 22, "{}", version(&largest));
    }

    #[test]
    fn a_long_text_is_refused_not_truncated() {
        assert!(matches!(
            qr_png(&"A".repeat(5000), 4),
            Err(RenderError::Qr(_))
        ));
    }
}
