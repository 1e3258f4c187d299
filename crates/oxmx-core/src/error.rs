//! Errors carried by arrays and returned by `eval`, I/O and transforms.
//!
//! An op never panics and never returns `Result`: an invalid op yields an array holding an
//! `Error` with the caller's source location, and every op on that array passes it on.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// What went wrong, in the categories MLX's Python bindings turn into exception types.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Invalid argument: wrong shapes, dtypes, values (Python `ValueError`).
    InvalidArgument,
    /// An index or axis out of range (Python `IndexError`).
    IndexOutOfRange,
    /// A wrong type where Python would raise `TypeError`.
    Type,
    /// A failure at run time: kernel error, unsupported on this device (`RuntimeError`).
    Runtime,
    /// Memory limit exceeded or allocation failure.
    OutOfMemory,
    /// A file could not be read or written, or its contents are malformed.
    Io,
}

#[derive(Clone)]
pub struct Error(Arc<ErrorInner>);

struct ErrorInner {
    kind: ErrorKind,
    message: String,
    location: Option<&'static Location<'static>>,
}

impl Error {
    #[track_caller]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Arc::new(ErrorInner { kind, message: message.into(), location: Some(Location::caller()) }))
    }
    pub fn without_location(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Arc::new(ErrorInner { kind, message: message.into(), location: None }))
    }
    #[track_caller]
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }
    #[track_caller]
    pub fn index(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::IndexOutOfRange, message)
    }
    #[track_caller]
    pub fn runtime(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Runtime, message)
    }
    #[track_caller]
    pub fn io(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Io, message)
    }
    #[track_caller]
    pub fn type_error(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Type, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// Where the failing op was called from (the user's code, through `#[track_caller]`).
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.0.location
    }
    /// The same error re-attributed to `location` (used when an op builder found the problem).
    pub fn at(self, location: &'static Location<'static>) -> Error {
        Error(Arc::new(ErrorInner { kind: self.0.kind, message: self.0.message.clone(), location: Some(location) }))
    }
    /// Prefixes the message with context, keeping kind and location.
    pub fn context(self, ctx: impl fmt::Display) -> Error {
        Error(Arc::new(ErrorInner { kind: self.0.kind, message: format!("{ctx}: {}", self.0.message), location: self.0.location }))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.message)?;
        if let Some(loc) = self.0.location {
            write!(f, " (at {}:{})", loc.file(), loc.line())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {})", self.0.kind, self)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    #[track_caller]
    fn from(e: std::io::Error) -> Error {
        Error::io(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `bail!(kind_fn, "fmt", args)` — return early with an error of the given constructor.
#[macro_export]
macro_rules! bail {
    (index: $($arg:tt)*) => { return Err($crate::error::Error::index(format!($($arg)*))) };
    (io: $($arg:tt)*) => { return Err($crate::error::Error::io(format!($($arg)*))) };
    (runtime: $($arg:tt)*) => { return Err($crate::error::Error::runtime(format!($($arg)*))) };
    (type: $($arg:tt)*) => { return Err($crate::error::Error::type_error(format!($($arg)*))) };
    ($($arg:tt)*) => { return Err($crate::error::Error::invalid(format!($($arg)*))) };
}
