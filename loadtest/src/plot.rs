//! The latency percentile plot: x is the percentile on a "nines" scale (0, 90, 99,
//! 99.9, 99.99), y the latency in milliseconds, as HdrHistogram's plotter draws it.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::LoadError;

fn nines(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).max(1e-5).log10()
}

pub fn percentiles(points: &[(f64, f64)], out: &Path, font: &Path) -> Result<(), LoadError> {
    let err = |e: &dyn std::fmt::Display| LoadError::Plot(e.to_string());
    let bytes = std::fs::read(font).map_err(|source| LoadError::Read {
        path: font.to_owned(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process.
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| LoadError::Plot(format!("{} is not a usable TrueType font", font.display())))?;
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let root = BitMapBackend::new(out, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("permitgate-load: latency by percentile", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..4.0f64, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(5)
        .x_label_formatter(&|x| match *x as i32 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            _ => "99.99%".into(),
        })
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(p, ms)| (nines(*p).min(4.0), *ms)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
