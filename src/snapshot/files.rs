//! Opening a repository's files as a compromised repository, relay or object store might
//! have left them: nothing is read through a symbolic link, nothing but a regular file is
//! read (a FIFO or a device such as `/dev/zero` would block or never end), a manifest is
//! read only up to [`MAX_MANIFEST_BYTES`], and an object only at the size the signed
//! manifest names for it. An object arriving from anywhere is written through an
//! [`ObjectSink`], which stops at that size and keeps the file only if its content hashes
//! to its name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::pace::io_step;
use super::sync_dir;
use crate::pace::{Pace, Pacer};

/// The largest manifest read from anywhere. A manifest naming a base and the default 32
/// deltas is about 8 KiB; a source offering more is refused before it is read whole.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

fn refused(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Why an object arriving from a source was not kept.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("is not the one the manifest names: more than the {size} bytes it names")]
    TooLarge { size: u64 },
    #[error("is not the one the manifest names: {written} of the {size} bytes it names")]
    Short { written: u64, size: u64 },
    #[error("is not the one the manifest names: its content hashes to {actual}")]
    Hash { actual: String },
    #[error("cannot be read or kept")]
    Io(#[from] io::Error),
}

impl ObjectError {
    /// Whether the source sent another object than the one named (as opposed to a
    /// failure to read or write it).
    pub fn is_not_the_named_object(&self) -> bool {
        !matches!(self, ObjectError::Io(_))
    }
}

/// Opens `path` for reading if it is a regular file, not through a symbolic link (the
/// last component is never followed), and says how long it is. Opened non-blocking, so a
/// FIFO put in its place cannot hold the opening thread.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(format!("{} is a symbolic link", path.display()))
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(format!("{} is not a regular file", path.display())));
    }
    Ok((file, meta.len()))
}

/// [`open_regular`], and the file must be `size` bytes, as the manifest names it.
pub fn open_object(path: &Path, size: u64) -> io::Result<File> {
    let (file, len) = open_regular(path)?;
    if len != size {
        return Err(refused(format!(
            "{} is {len} bytes; the manifest names {size}",
            path.display()
        )));
    }
    Ok(file)
}

/// A manifest file, read whole if it is a regular file of at most [`MAX_MANIFEST_BYTES`].
pub fn read_manifest(path: &Path) -> io::Result<Vec<u8>> {
    read_bounded(path, MAX_MANIFEST_BYTES)
}

/// A regular file of at most `max` bytes, read whole; `FileTooLarge` for a larger one,
/// which is not read.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let too_large = || {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        )
    };
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // A file that grew since it was measured is still read no further than the bound.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// An object being written into `objects/` as it arrives: at most `size` bytes (the
/// manifest's), hashed as written, at `pace` when given; [`ObjectSink::finish`] keeps it
/// under its name only if it is whole and hashes to that name. Dropped unfinished, the
/// partial file is removed.
pub struct ObjectSink {
    tmp: PathBuf,
    path: PathBuf,
    file: Option<File>,
    hash: String,
    size: u64,
    written: u64,
    hasher: blake3::Hasher,
    pacer: Pacer,
    /// Renamed into place: nothing to remove.
    kept: bool,
}

impl ObjectSink {
    /// Starts writing the object `hash` of `size` bytes to `path`.
    pub fn create(path: PathBuf, hash: &str, size: u64, pace: Option<Pace>) -> io::Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{hash}.part"));
        let file = File::create(&tmp)?;
        Ok(ObjectSink {
            tmp,
            path,
            file: Some(file),
            hash: hash.to_owned(),
            size,
            written: 0,
            hasher: blake3::Hasher::new(),
            pacer: Pacer::new(pace),
            kept: false,
        })
    }

    /// Writes the next piece; refuses one that would take the object past its size.
    pub fn write(&mut self, mut piece: &[u8]) -> Result<(), ObjectError> {
        if self.written + piece.len() as u64 > self.size {
            return Err(ObjectError::TooLarge { size: self.size });
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        self.hasher.update(piece);
        self.written += piece.len() as u64;
        while !piece.is_empty() {
            let step = piece.len().min(io_step(&self.pacer));
            file.write_all(&piece[..step])?;
            piece = &piece[step..];
            self.pacer.tick();
        }
        Ok(())
    }

    /// Keeps the object under its name (fsynced, then renamed) if it is whole and its
    /// content hashes to its name.
    pub fn finish(mut self) -> Result<(), ObjectError> {
        if self.written != self.size {
            return Err(ObjectError::Short {
                written: self.written,
                size: self.size,
            });
        }
        let actual = self.hasher.finalize().to_hex();
        if actual.as_str() != self.hash {
            return Err(ObjectError::Hash {
                actual: actual.to_string(),
            });
        }
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        self.kept = true;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")));
        Ok(())
    }

    /// Copies a regular file (no link followed) into this sink; one of another size than
    /// named is not the named object.
    pub fn copy_from(mut self, source: &Path) -> Result<(), ObjectError> {
        let (file, len) = open_regular(source)?;
        if len > self.size {
            return Err(ObjectError::TooLarge { size: self.size });
        }
        // A file growing meanwhile is read one byte past its size at most: refused.
        let mut file = file.take(self.size + 1);
        let mut buf = vec![0u8; io_step(&self.pacer)];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.write(&buf[..n])?;
        }
        self.finish()
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    #[test]
    fn links_devices_and_fifos_are_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"signing key").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let e = open_regular(&link).expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert!(open_regular(&zero).is_err());
        let e = open_regular(Path::new("/dev/zero")).expect_err("a device");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success(), "mkfifo");
        let e = open_regular(&fifo).expect_err("a FIFO, without blocking");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(open_regular(&secret).expect("a file").1, 11);
    }

    #[test]
    fn an_object_is_read_only_at_the_size_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("o");
        std::fs::write(&p, b"12345").expect("write");
        assert!(open_object(&p, 5).is_ok());
        let e = open_object(&p, 4).expect_err("size");
        assert!(e.to_string().contains("names 4"), "{e}");
    }

    #[test]
    fn a_manifest_is_read_up_to_its_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("manifest.json");
        std::fs::write(&p, b"{}").expect("write");
        assert_eq!(read_manifest(&p).expect("small"), b"{}");
        let f = File::create(&p).expect("create");
        f.set_len(MAX_MANIFEST_BYTES + 1).expect("grow");
        let e = read_manifest(&p).expect_err("too large");
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn a_sink_keeps_only_a_whole_object_with_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = b"an object's bytes".repeat(100);
        let h = hash(&body);
        let path = dir.path().join("objects").join(&h);
        let size = body.len() as u64;

        let mut s = ObjectSink::create(path.clone(), &h, size, None).expect("sink");
        s.write(&body[..10]).expect("piece");
        let e = s.write(&body).expect_err("past its size");
        assert!(matches!(e, ObjectError::TooLarge { .. }), "{e}");
        drop(s);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects"))
                .expect("dir")
                .count(),
            0,
            "the partial file is removed"
        );

        let mut s = ObjectSink::create(path.clone(), &h, size, None).expect("sink");
        s.write(&body[..size as usize - 1]).expect("short");
        assert!(s.finish().is_err(), "short");
        assert!(!path.exists());

        let mut other = body.clone();
        other[0] ^= 1;
        let mut s = ObjectSink::create(path.clone(), &h, size, None).expect("sink");
        s.write(&other).expect("same size");
        let e = s.finish().expect_err("another content");
        assert!(matches!(e, ObjectError::Hash { .. }), "{e}");
        assert!(!path.exists());

        let mut s =
            ObjectSink::create(path.clone(), &h, size, Some(Pace::BESIDE_REQUESTS)).expect("sink");
        for piece in body.chunks(7) {
            s.write(piece).expect("piece");
        }
        s.finish().expect("whole");
        assert_eq!(std::fs::read(&path).expect("kept"), body);
    }
}
