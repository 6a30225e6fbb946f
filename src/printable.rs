//! Printable forms: QR codes and one-page documents as PNG or PDF.
//!
//! The paper form of a receipt (what an immigration office hands out) and the QR code of
//! a temporary permit. QR codes use error correction level M; their text is base45, so
//! the encoder picks alphanumeric mode. PNG text uses a built-in bitmap font (ASCII);
//! PDF text uses Helvetica, one of the fonts every PDF reader has, so nothing is embedded
//! and the QR code is drawn as vector squares that print sharp at any size.

use embedded_graphics::mono_font::{ascii, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};
use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
use qrcode::{Color, EcLevel, QrCode};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the text does not fit a QR code")]
    Qr(#[source] qrcode::types::QrError),
    #[error("cannot encode the PNG")]
    Png(#[source] png::EncodingError),
}

/// A one-page document: a title, labelled rows, a closing note and a QR code under them.
#[derive(Debug, Clone)]
pub struct Page {
    pub title: String,
    pub rows: Vec<(String, String)>,
    pub note: String,
    pub qr_text: String,
}

impl Page {
    /// The rows as monospaced lines (labels padded to one column), then the note.
    fn text_lines(&self) -> Vec<String> {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|(l, v)| format!("{:width$}{v}", format!("{l}:")))
            .collect();
        lines.push(String::new());
        lines.push(self.note.clone());
        lines
    }
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

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl DrawTarget for Canvas {
    type Color = BinaryColor;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = embedded_graphics::Pixel<Self::Color>>,
    {
        for embedded_graphics::Pixel(p, c) in pixels {
            if let (Ok(x), Ok(y)) = (usize::try_from(p.x), usize::try_from(p.y)) {
                if x < self.width && y < self.height && c == BinaryColor::On {
                    self.pixels[y * self.width + x] = 0;
                }
            }
        }
        Ok(())
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

/// Non-ASCII characters become `?`: the bitmap font and Helvetica's standard encoding
/// both cover ASCII only.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

pub fn png(page: &Page) -> Result<Vec<u8>, RenderError> {
    const MARGIN: usize = 40;
    const LINE: usize = 26;
    const SCALE: usize = 4;
    let m = modules(&page.qr_text)?;
    let qr_side = (m.width + 2 * QUIET_ZONE) * SCALE;
    let lines = page.text_lines();
    let text_width = lines
        .iter()
        .chain(std::iter::once(&page.title))
        .map(|l| l.chars().count() * 10)
        .max()
        .unwrap_or(0);
    let width = 2 * MARGIN + text_width.max(qr_side);
    let text_height = (lines.len() + 2) * LINE;
    let height = 2 * MARGIN + text_height + qr_side;
    let mut c = Canvas::new(width, height);
    let style = MonoTextStyle::new(&ascii::FONT_10X20, BinaryColor::On);
    let mut y = MARGIN;
    for (i, line) in std::iter::once(&page.title).chain(&lines).enumerate() {
        let text = ascii(line);
        let _ = Text::with_baseline(
            &text,
            Point::new(MARGIN as i32, y as i32),
            style,
            Baseline::Top,
        )
        .draw(&mut c);
        y += if i == 0 { 2 * LINE } else { LINE };
    }
    c.draw_qr(&m, MARGIN, MARGIN + text_height, SCALE);
    c.png()
}

pub fn pdf(page: &Page) -> Result<Vec<u8>, RenderError> {
    const A4: (f32, f32) = (595.0, 842.0);
    const MARGIN: f32 = 56.0;
    let m = modules(&page.qr_text)?;
    let (catalog, tree, page_id, regular, bold, content_id) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
    );
    let (f_regular, f_bold) = (Name(b"F1"), Name(b"F2"));
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids([page_id]).count(1);
    let mut p = pdf.page(page_id);
    p.media_box(Rect::new(0.0, 0.0, A4.0, A4.1));
    p.parent(tree);
    p.contents(content_id);
    p.resources()
        .fonts()
        .pair(f_regular, regular)
        .pair(f_bold, bold);
    drop(p);
    pdf.type1_font(regular).base_font(Name(b"Helvetica"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold"));

    let mut content = Content::new();
    let mut y = A4.1 - MARGIN;
    content.begin_text();
    content.set_font(f_bold, 18.0);
    content.next_line(MARGIN, y);
    content.show(Str(ascii(&page.title).as_bytes()));
    content.end_text();
    y -= 34.0;
    let show = |content: &mut Content, font, x: f32, y: f32, text: &str| {
        content.begin_text();
        content.set_font(font, 11.0);
        content.next_line(x, y);
        content.show(Str(ascii(text).as_bytes()));
        content.end_text();
    };
    for (label, value) in &page.rows {
        show(&mut content, f_bold, MARGIN, y, label);
        show(&mut content, f_regular, MARGIN + 120.0, y, value);
        y -= 17.0;
    }
    y -= 17.0;
    show(&mut content, f_regular, MARGIN, y, &page.note);
    y -= 17.0;
    // The QR code: 200 pt square under the text, quiet zone included.
    let side = 200.0;
    let module = side / (m.width + 2 * QUIET_ZONE) as f32;
    let (x0, top) = (MARGIN, y - 12.0);
    for (i, _) in m.dark.iter().enumerate().filter(|(_, d)| **d) {
        let (mx, my) = (
            (i % m.width + QUIET_ZONE) as f32,
            (i / m.width + QUIET_ZONE) as f32,
        );
        content.rect(x0 + mx * module, top - (my + 1.0) * module, module, module);
    }
    content.fill_nonzero();
    pdf.stream(content_id, &content.finish());
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_replaced_not_dropped() {
        assert_eq!(ascii("CHAN 陳\n"), "CHAN ??");
    }

    #[test]
    fn a_long_text_is_refused_not_truncated() {
        assert!(matches!(
            qr_png(&"A".repeat(5000), 4),
            Err(RenderError::Qr(_))
        ));
    }
}
