//! Error numbers, named as on the control channel (`<tag> err ENODEV ...`).

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// No such path, handle target or device (also: lookup of a dead device).
    ENOENT,
    /// The object existed but has been removed (stale handle, dead device).
    ENODEV,
    /// Busy: the name is still held by an object that is not yet released.
    EBUSY,
    EEXIST,
    EINVAL,
    EBADF,
    EACCES,
    EISDIR,
    ENOTDIR,
    ENOSPC,
    EIO,
    ENOSYS,
    E2BIG,
}

impl Errno {
    pub fn name(self) -> &'static str {
        match self {
            Errno::ENOENT => "ENOENT",
            Errno::ENODEV => "ENODEV",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::EBADF => "EBADF",
            Errno::EACCES => "EACCES",
            Errno::EISDIR => "EISDIR",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::ENOSPC => "ENOSPC",
            Errno::EIO => "EIO",
            Errno::ENOSYS => "ENOSYS",
            Errno::E2BIG => "E2BIG",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
