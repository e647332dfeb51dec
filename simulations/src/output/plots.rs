//! The run's plots, each drawn once for PNG and once for SVG by the same
//! code: directory convergence, deadline adherence per urgency, time to
//! conclusion against the deadlines, and the load on each consulting
//! organization.

use crate::scenario::Scenario;
use crate::year::Outcome;
use crate::year::summary::Summary;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::urgency::Urgency;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

const SIZE: (u32, u32) = (900, 520);
const FONT: &str = "sans-serif";

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn urgency_color(u: Urgency) -> RGBColor {
    match u {
        Urgency::Planned => RGBColor(46, 110, 180),
        Urgency::Urgent => RGBColor(230, 140, 20),
        Urgency::Emergency => RGBColor(200, 40, 40),
    }
}

fn level_color(l: OrgLevel) -> RGBColor {
    match l {
        OrgLevel::District => RGBColor(120, 120, 120),
        OrgLevel::Regional => RGBColor(46, 110, 180),
        OrgLevel::Federal => RGBColor(200, 40, 40),
    }
}

/// The font is compiled in, so a machine without fonts still gets labels.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font; a failure only loses labels.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// One plot, drawn the same way on any backend.
trait Plot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn
    where
        DB::ErrorType: 'static;
}

/// Draws `plot` as `<name>.png` and `<name>.svg` in `dir`.
fn both(dir: &Path, name: &str, plot: &impl Plot) -> io::Result<Vec<PathBuf>> {
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    let fail = |e: Box<dyn std::error::Error>| io::Error::other(format!("{name}: {e}"));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        plot.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.into()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        plot.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.into()))?;
    }
    Ok(vec![png, svg])
}

pub fn draw_all(
    dir: &Path,
    scenario: &Scenario,
    outcome: &Outcome,
    summary: &Summary,
) -> io::Result<Vec<PathBuf>> {
    register_font();
    let mut written = Vec::new();
    if let Some(c) = &summary.convergence {
        let title = format!(
            "{}: a record change reaching {} directories (anti-entropy every {} s)",
            scenario.name, c.holders, c.interval_s
        );
        let plot = Convergence {
            curve: &c.curve,
            title,
        };
        written.extend(both(dir, "convergence", &plot)?);
    }
    let name = scenario.name;
    written.extend(both(dir, "deadlines", &Deadlines { name, summary })?);
    let plot = TimeToConclusion { name, outcome };
    written.extend(both(dir, "time_to_conclusion", &plot)?);
    let plot = Load { scenario, outcome };
    written.extend(both(dir, "load", &plot)?);
    Ok(written)
}

/// The frame every plot shares: its title, margins and room for labels.
fn frame<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50);
    builder
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Drawn
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .position(position)
        .draw()?;
    Ok(())
}

struct Convergence<'a> {
    curve: &'a [(f64, f64)],
    title: String,
}

impl Plot for Convergence<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let end = self.curve.last().map_or(60.0, |(t, _)| *t).max(1.0);
        let mut chart =
            frame(root, &self.title).build_cartesian_2d(0f64..end * 1.05, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("seconds after the change")
            .y_desc("% of directories holding it")
            .label_style((FONT, 14))
            .draw()?;
        // A step curve: the share holds until the next change.
        let mut points = Vec::with_capacity(self.curve.len() * 2);
        let mut last = 0.0;
        for &(t, share) in self.curve {
            points.push((t, last));
            points.push((t, share * 100.0));
            last = share * 100.0;
        }
        chart.draw_series(LineSeries::new(
            points,
            RGBColor(46, 110, 180).stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            [(0.0, 99.0), (end * 1.05, 99.0)],
            RGBColor(160, 160, 160),
        ))?;
        Ok(())
    }
}

struct Deadlines<'a> {
    name: &'a str,
    summary: &'a Summary,
}

impl Plot for Deadlines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let title = format!("{}: consultations concluded within the deadline", self.name);
        let mut chart =
            frame(root, &title).build_cartesian_2d((0u32..2u32).into_segmented(), 0f64..100f64)?;
        let rows = &self.summary.by_urgency;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| {
                let i = match x {
                    SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => *i as usize,
                    SegmentValue::Last => return String::new(),
                };
                rows.get(i).map_or(String::new(), |r| {
                    format!("{} ({} cases)", r.urgency, r.started)
                })
            })
            .y_desc("% of consultations started")
            .label_style((FONT, 14))
            .draw()?;
        let parts: [(&str, RGBColor); 4] = [
            ("in time", RGBColor(60, 150, 60)),
            ("late", RGBColor(230, 140, 20)),
            ("failed", RGBColor(200, 40, 40)),
            ("open at the end", RGBColor(170, 170, 170)),
        ];
        for (k, &(label, color)) in parts.iter().enumerate() {
            let bars = rows.iter().enumerate().map(|(i, r)| {
                let total = r.started.max(1) as f64;
                let counts = [r.in_time, r.late, r.failed, r.open];
                let below: usize = counts[..k].iter().sum();
                let y0 = below as f64 / total * 100.0;
                let y1 = (below + counts[k]) as f64 / total * 100.0;
                let x = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(x), y0),
                        (SegmentValue::Exact(x + 1), y1),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, 40, 40);
                bar
            });
            chart.draw_series(bars)?.label(label).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    }
}

struct TimeToConclusion<'a> {
    name: &'a str,
    outcome: &'a Outcome,
}

impl Plot for TimeToConclusion<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let title = format!("{}: time from request to conclusion", self.name);
        let mut chart =
            frame(root, &title).build_cartesian_2d((0.1f64..2000f64).log_scale(), 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("hours (log scale); dashed: 3 h, 24 h and 4 working days")
            .y_desc("% concluded")
            .label_style((FONT, 14))
            .draw()?;
        for limit in [3.0, 24.0, 96.0] {
            chart.draw_series(DashedLineSeries::new(
                [(limit, 0.0), (limit, 100.0)],
                6,
                4,
                RGBColor(140, 140, 140).into(),
            ))?;
        }
        for u in Urgency::ALL {
            let cases: Vec<_> = (self.outcome.ledger.cases.iter())
                .filter(|c| c.urgency == u)
                .collect();
            let mut hours: Vec<f64> = cases
                .iter()
                .filter_map(|c| c.time_to_conclusion())
                .map(|d| (d.as_secs_f64() / 3600.0).max(0.1))
                .collect();
            hours.sort_by(f64::total_cmp);
            let n = cases.len().max(1) as f64;
            let points = hours
                .iter()
                .enumerate()
                .map(|(i, h)| (*h, (i + 1) as f64 / n * 100.0));
            let color = urgency_color(u);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(u.to_string())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }
}

struct Load<'a> {
    scenario: &'a Scenario,
    outcome: &'a Outcome,
}

impl Plot for Load<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let mut loads: Vec<(u32, OrgLevel)> = (self.scenario.orgs.iter())
            .zip(&self.outcome.ledger.load)
            .filter(|(_, l)| l.received > 0)
            .map(|(o, l)| (l.concluded, o.level))
            .collect();
        loads.sort_by_key(|l| std::cmp::Reverse(l.0));
        let max = loads.first().map_or(1, |l| l.0).max(1) as f64;
        let n = loads.len().max(1) as f64;
        let title = format!(
            "{}: conclusions per consulting organization, busiest first",
            self.scenario.name
        );
        let mut chart = frame(root, &title).build_cartesian_2d(0f64..n, 0f64..max * 1.1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("consulting organizations")
            .y_desc("conclusions in the run")
            .label_style((FONT, 14))
            .draw()?;
        for level in [OrgLevel::District, OrgLevel::Regional, OrgLevel::Federal] {
            let color = level_color(level);
            let bars = loads
                .iter()
                .enumerate()
                .filter(|(_, l)| l.1 == level)
                .map(|(i, l)| {
                    let x = i as f64;
                    Rectangle::new([(x + 0.1, 0.0), (x + 0.9, f64::from(l.0))], color.filled())
                });
            chart
                .draw_series(bars)?
                .label(level.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}
