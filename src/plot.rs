//! SVG plots, so a person can look instead of read: a bench run over time, and each key's
//! consumption with its projected exhaustion.

use std::path::Path;

use anyhow::{anyhow, Result};
use keyledger_core::{Span, Timestamp};
use keyledger_projections::forecast::Forecast;
use keyledger_projections::Projections;
use plotters::prelude::*;

use crate::workload::CapacityPlan;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Throughput (top) and p99 commit latency (bottom) over the run.
pub fn timeline(path: &Path, plan: &CapacityPlan) -> Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(300);
    let end = plan.timeline.last().map_or(1.0, |p| p[0]).max(1.0);
    let rate_max = plan.timeline.iter().map(|p| p[1]).fold(1.0, f64::max) * 1.1;
    let latency_max = plan.timeline.iter().map(|p| p[2]).fold(1.0, f64::max) * 1.1;
    let title = format!(
        "keyledger bench {} (seed {}): events per second",
        plan.shape.preset, plan.shape.seed
    );
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..rate_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("events/s")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            plan.timeline.iter().map(|p| (p[0], p[1])),
            &BLUE,
        ))
        .map_err(err)?;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "p99 commit latency per half second (ms)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..latency_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            plan.timeline.iter().map(|p| (p[0], p[2])),
            &RED,
        ))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Up to eight keys: cumulative activations by day, and a dashed projection to exhaustion.
pub fn forecast(path: &Path, p: &Projections, forecasts: &[Forecast], at: Timestamp) -> Result<()> {
    std::fs::write(path, forecast_svg(p, forecasts, at)?)?;
    Ok(())
}

/// [`forecast`] as SVG text (the console shows it inline).
pub fn forecast_svg(p: &Projections, forecasts: &[Forecast], at: Timestamp) -> Result<String> {
    let mut svg = String::new();
    draw_forecast(&mut svg, p, forecasts, at)?;
    Ok(svg)
}

/// The days the forecast plot spans: from the first day a shown key consumed (or today) to
/// the latest exhaustion, at most three years ahead.
fn days_shown(p: &Projections, shown: &[&Forecast], today: i64) -> (i64, i64) {
    let first = shown
        .iter()
        .filter_map(|f| p.books.keys.get(keyledger_core::KeyId(f.key_id)))
        .filter_map(|k| k.daily.keys().next().copied())
        .min()
        .unwrap_or(today)
        .min(today);
    let last = shown
        .iter()
        .filter_map(|f| f.exhaustion)
        .map(|t| t.unix_day())
        .max()
        .unwrap_or(today)
        .clamp(today, today + 3 * 365)
        .max(first + 1);
    (first, last)
}

/// How strongly a key's limit line is drawn beside its consumption.
const LIMIT_OPACITY: f64 = 0.5;

fn draw_forecast(
    svg: &mut String,
    p: &Projections,
    forecasts: &[Forecast],
    at: Timestamp,
) -> Result<()> {
    let shown: Vec<&Forecast> = forecasts.iter().take(8).collect();
    let today = at.unix_day();
    let (first, last) = days_shown(p, &shown, today);
    let y_max = shown.iter().map(|f| f.total).max().unwrap_or(1).max(1) as f64 * 1.05;
    let root = SVGBackend::with_string(svg, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let date = |day: &i64| Timestamp::EPOCH.plus(Span::days(*day)).to_string()[..10].to_owned();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "MAK consumption and projected exhaustion (as of {})",
                &at.to_string()[..10]
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(first..last, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&date)
        .x_labels(6)
        .y_desc("activations")
        .draw()
        .map_err(err)?;
    for (i, f) in shown.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let Some(key) = p.books.keys.get(keyledger_core::KeyId(f.key_id)) else {
            continue;
        };
        let mut used = 0u64;
        let mut points = vec![(first, 0.0)];
        for (day, d) in key.daily.range(..=today) {
            used += d.consumed;
            points.push((*day, used as f64));
        }
        points.push((today, f.used as f64));
        let label = format!("key {} {} ({}/{})", f.key_id, f.product, f.used, f.total);
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        // The key's limit (R9), faint: the line its consumption may not cross.
        let limit = vec![(first, f.total as f64), (last, f.total as f64)];
        let faint = color.mix(LIMIT_OPACITY).stroke_width(1);
        chart
            .draw_series(LineSeries::new(limit, faint))
            .map_err(err)?;
        if let Some(end) = f.exhaustion.filter(|_| f.remaining > 0) {
            let end_day = end.unix_day().min(last);
            let dashes = DashedLineSeries::new(
                vec![(today, f.used as f64), (end_day, f.total as f64)],
                6,
                4,
                color.into(),
            );
            chart.draw_series(dashes).map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Per period, a bar of activations consumed with the refused attempts stacked on top.
pub fn usage(path: &Path, report: &keyledger_projections::usage::UsageReport) -> Result<()> {
    std::fs::write(path, usage_svg(report)?)?;
    Ok(())
}

/// [`usage`] as SVG text (the console shows it inline).
pub fn usage_svg(report: &keyledger_projections::usage::UsageReport) -> Result<String> {
    let mut svg = String::new();
    draw_usage(&mut svg, report)?;
    Ok(svg)
}

fn draw_usage(svg: &mut String, report: &keyledger_projections::usage::UsageReport) -> Result<()> {
    let rows = &report.periods;
    let y_max = rows
        .iter()
        .map(|r| r.consumed + r.refused)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let root = SVGBackend::with_string(svg, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let caption = format!(
        "{} {}: consumed and refused per {:?}",
        report.scope.replace('_', " "),
        report.id,
        report.by
    )
    .to_lowercase();
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..rows.len().max(1) as f64, 0f64..y_max)
        .map_err(err)?;
    let label = |x: &f64| {
        rows.get(x.floor().max(0.0) as usize)
            .map_or_else(String::new, |r| r.period.clone())
    };
    chart
        .configure_mesh()
        .x_label_formatter(&label)
        .x_labels(rows.len().clamp(1, 12))
        .y_desc("activations / attempts")
        .draw()
        .map_err(err)?;
    let bar = |i: usize, low: u64, high: u64, color: RGBColor| {
        let x = i as f64;
        Rectangle::new(
            [(x + 0.1, low as f64), (x + 0.9, high as f64)],
            color.filled(),
        )
    };
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, 0, r.consumed, BLUE)),
        )
        .map_err(err)?
        .label("consumed")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.filled()));
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, r.consumed, r.consumed + r.refused, RED)),
        )
        .map_err(err)?
        .label("refused")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
