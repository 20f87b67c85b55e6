//! One control request and what serving it answers, shared by the control
//! module and by every subsystem that owns verbs. A leaf: it imports
//! nothing of the control machinery, so a subsystem can serve verbs without
//! depending on the module that routes them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::errno::Errno;

/// One parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tag: String,
    pub verb: String,
    /// Everything after the verb and one space, unparsed (`write` keeps
    /// spaces in its data).
    pub rest: String,
}

impl Request {
    /// Space-separated arguments.
    pub fn args(&self) -> Vec<&str> {
        self.rest.split(' ').filter(|a| !a.is_empty()).collect()
    }
}

/// What serving a request answers: the `ok` payload, or the errno and text
/// of the `err` line.
pub type Reply = Result<Vec<u8>, (Errno, String)>;

/// An `err` reply.
pub fn fail<T>(errno: Errno, text: impl Into<String>) -> Result<T, (Errno, String)> {
    Err((errno, text.into()))
}

/// An errno with a text that says what it was about (`no such entry: x`).
pub fn with_context(errno: Errno, what: &str) -> (Errno, String) {
    let text = match errno {
        Errno::ENOENT => format!("no such entry: {what}"),
        Errno::ENODEV => format!("removed: {what}"),
        Errno::EBADF => format!("no such handle: {what}"),
        Errno::EBUSY => format!("busy: {what}"),
        Errno::EEXIST => format!("already exists: {what}"),
        Errno::EISDIR => format!("not an attribute: {what}"),
        Errno::ENOTDIR => format!("not a directory: {what}"),
        Errno::EACCES => format!("not writable: {what}"),
        _ => String::from(what),
    };
    (errno, text)
}

/// EINVAL with `usage: ...` unless the request has `min..=max` arguments.
pub fn arg_count(req: &Request, min: usize, max: usize, usage: &str) -> Result<(), (Errno, String)> {
    let n = req.args().len();
    if n < min || n > max { fail(Errno::EINVAL, format!("usage: {usage}")) } else { Ok(()) }
}
