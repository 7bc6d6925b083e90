//! The NVMe/TCP export of a disk: its TCP port and NQN.

use std::fmt;

use super::validation::ValidationError;
use super::Nqn;

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

impl Port {
    pub fn new(port: u16) -> Result<Self, ValidationError> {
        if port == 0 {
            return Err(ValidationError::ZeroPort);
        }
        Ok(Port(port))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Port {
    fn default() -> Self {
        Port(node_io::fabrics::NVME_TCP_PORT)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// NVMe/TCP export settings of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeExport {
    pub port: Port,
    pub nqn: Nqn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(Port::new(0), Err(ValidationError::ZeroPort));
        assert_eq!(Port::new(4420).unwrap().get(), 4420);
        assert_eq!(Port::default().get(), 4420);
    }
}
