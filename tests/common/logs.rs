//! The driver's log as an operator's collector sees it: a writer that keeps every byte.

use std::io::Write;
use std::sync::{Arc, Mutex};

use rds_csi::observability::logging::{init_with_writer, LogFormat};

/// Everything logged through this writer (clones share the buffer).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Installs the production log setup at its default level (`info`, text, no ANSI colours
    /// in a buffer) writing here; once per test process.
    pub fn install() -> Self {
        let c = Captured::default();
        let w = c.clone();
        init_with_writer(LogFormat::Text, "info", move || w.clone());
        c
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// What was logged since the last `take`, emptying the buffer.
    pub fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}
