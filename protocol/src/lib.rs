//! Konsilium's protocol core: pure and deterministic. Time and randomness are
//! arguments; nothing here touches a socket, a file or a clock.

pub mod identity;
pub mod signed;
pub mod specialty;
pub mod time;
