//! Connect time by percentile: TCP connect, handshake and the answer to
//! the subscription, for every (re)connection.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::DrawResult;
use super::spectrum::draw_spectrum;
use crate::report::saved::Saved;

pub fn draw<DB: DrawingBackend>(saved: &Saved, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    draw_spectrum(
        saved,
        area,
        |t| saved.histograms.get(&t).map(|h| h.connect.clone()),
        "connect time (ms)",
    )
}
