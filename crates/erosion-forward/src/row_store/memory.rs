//! Rows kept in memory.

use anyhow::{bail, Result};
use std::ops::Range;

use super::{check_range, check_row, RowSink};

/// Rows kept in memory, row-major. // [n_rows, dim]
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRows {
    dim: usize,
    data: Vec<f32>,
}

impl MemoryRows {
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            bail!("in-memory rows: the row length must be positive");
        }
        Ok(MemoryRows {
            dim,
            data: Vec::new(),
        })
    }

    pub fn n_rows(&self) -> usize {
        self.data.len() / self.dim
    }
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`. // [dim]
    pub fn row(&self, i: usize) -> Result<&[f32]> {
        self.rows(i..i.saturating_add(1))
    }

    /// Rows `range`, contiguous. // [range.len() * dim]
    pub fn rows(&self, range: Range<usize>) -> Result<&[f32]> {
        check_range(&|| "in-memory rows".into(), self.n_rows(), &range)?;
        Ok(&self.data[range.start * self.dim..range.end * self.dim])
    }

    /// All rows. // [n_rows * dim]
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
}

impl RowSink for MemoryRows {
    fn dim(&self) -> usize {
        self.dim
    }
    fn n_rows(&self) -> usize {
        MemoryRows::n_rows(self)
    }
    fn push_row(&mut self, row: &[f32]) -> Result<()> {
        check_row(&|| "in-memory rows".into(), self.n_rows(), self.dim, row)?;
        self.data.extend_from_slice(row);
        Ok(())
    }
}
