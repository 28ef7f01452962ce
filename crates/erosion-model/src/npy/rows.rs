//! A `.npy` file whose shape is known before its data: `[n_rows, row...]`, filled one block of
//! rows at a time at any row offset. Rows may arrive out of order (batches sorted by length)
//! and a fill stopped half-way goes on where it was: the file is created at its final size,
//! so a row's bytes have one place, `data_start + row * row_bytes`.
//!
//! The file is not atomic by itself: callers fill `PATH.partial` and rename it when every row
//! is written and synced ([`NpyRowFile::finish`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use super::{element_count, header_bytes, NpyElement};

/// An open `.npy` file of `T` with a fixed shape, written by rows.
#[derive(Debug)]
pub struct NpyRowFile<T: NpyElement> {
    path: PathBuf,
    file: File,
    shape: Vec<usize>,
    /// Bytes before the first element (the header).
    data_start: u64,
    /// Elements per row: the product of `shape[1..]`.
    row_len: usize,
    /// It held this header and size when opened: its rows are those written before.
    reopened: bool,
    _elem: PhantomData<T>,
}

impl<T: NpyElement> NpyRowFile<T> {
    /// Opens `path` to go on filling it when it already holds a header for exactly this dtype
    /// and `shape` (and its full size); otherwise creates it, header written and data zeroed.
    /// `shape` must have at least one axis (the rows).
    pub fn open_or_create(path: &Path, shape: &[usize]) -> Result<Self> {
        ensure!(
            !shape.is_empty(),
            "{}: a row file needs a shape with a row axis",
            path.display()
        );
        let n = element_count(shape).with_context(|| path.display().to_string())?;
        let header = header_bytes(T::DESCR, shape);
        let size = header.len() as u64 + n as u64 * T::SIZE as u64;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let reopened = holds(&mut file, &header, size)?;
        if !reopened {
            // A fresh file, or one of another run: start over.
            file.set_len(0)?;
            file.write_all(&header)
                .with_context(|| format!("writing {}", path.display()))?;
            file.set_len(size)
                .with_context(|| format!("sizing {} to {size} bytes", path.display()))?;
        }
        Ok(NpyRowFile {
            path: path.to_path_buf(),
            file,
            shape: shape.to_vec(),
            data_start: header.len() as u64,
            row_len: shape[1..].iter().product(),
            reopened,
            _elem: PhantomData,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether the file already held this dtype and shape (its earlier rows are kept), rather
    /// than being created (zeroed).
    pub fn reopened(&self) -> bool {
        self.reopened
    }

    /// Writes rows `first_row..first_row + data.len() / row_len`. `[n, row...]` flattened
    pub fn write_rows(&mut self, first_row: usize, data: &[T]) -> Result<()> {
        ensure!(
            self.row_len > 0 && data.len().is_multiple_of(self.row_len),
            "{}: {} values are not whole rows of {}",
            self.path.display(),
            data.len(),
            self.row_len
        );
        let rows = data.len() / self.row_len;
        ensure!(
            first_row + rows <= self.shape[0],
            "{}: rows {first_row}..{} are past the {} rows of the file",
            self.path.display(),
            first_row + rows,
            self.shape[0]
        );
        let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
        data.iter().for_each(|&x| x.put_le(&mut bytes));
        let at = self.data_start + (first_row * self.row_len * T::SIZE) as u64;
        self.file.seek(SeekFrom::Start(at))?;
        self.file
            .write_all(&bytes)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes the written rows to the disk, so a record that they are written can follow.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Syncs the file and renames it to `dest` (atomic within one file system).
    pub fn finish(self, dest: &Path) -> Result<()> {
        self.sync()?;
        std::fs::rename(&self.path, dest)
            .with_context(|| format!("renaming {} to {}", self.path.display(), dest.display()))
    }
}

/// Whether `file` has exactly `size` bytes and starts with `header`.
fn holds(file: &mut File, header: &[u8], size: u64) -> Result<bool> {
    if file.metadata()?.len() != size {
        return Ok(false);
    }
    let mut have = vec![0u8; header.len()];
    file.seek(SeekFrom::Start(0))?;
    Ok(file.read_exact(&mut have).is_ok() && have == header)
}

#[cfg(test)]
mod tests {
    use super::super::{read_npy_as, write_npy};
    use super::*;

    #[test]
    fn rows_written_out_of_order_and_across_reopens_read_back_as_numpy_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = (dir.path().join("a.npy"), dir.path().join("want.npy"));
        let data: Vec<f32> = (0..12).map(|x| x as f32 * 0.5).collect();
        write_npy(&want, &[4, 3], &data).unwrap();
        let mut f = NpyRowFile::<f32>::open_or_create(&path, &[4, 3]).unwrap();
        f.write_rows(2, &data[6..12]).unwrap();
        f.write_rows(0, &data[..3]).unwrap();
        drop(f);
        // Reopened with the same shape: what was written stays.
        let mut f = NpyRowFile::<f32>::open_or_create(&path, &[4, 3]).unwrap();
        assert!(f.reopened());
        f.write_rows(1, &data[3..6]).unwrap();
        f.finish(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&want).unwrap());
        assert_eq!(read_npy_as::<f32>(&path).unwrap(), (vec![4, 3], data));
    }

    #[test]
    fn another_shape_starts_over_and_bad_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let mut f = NpyRowFile::<f32>::open_or_create(&path, &[2, 2]).unwrap();
        f.write_rows(0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        drop(f);
        let mut f = NpyRowFile::<f32>::open_or_create(&path, &[3, 2]).unwrap();
        assert!(!f.reopened());
        f.sync().unwrap();
        assert_eq!(read_npy_as::<f32>(&path).unwrap().1, vec![0.0; 6]);
        let err = f.write_rows(2, &[1.0, 2.0, 3.0, 4.0]).unwrap_err();
        assert!(err.to_string().contains("past the 3 rows"), "{err}");
        let err = f.write_rows(0, &[1.0]).unwrap_err();
        assert!(err.to_string().contains("not whole rows"), "{err}");
    }
}
