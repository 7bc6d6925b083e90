//! Waiting for a loop device to stop backing a file (after `losetup -d`).

use std::path::Path;
use std::time::Instant;

use super::{wait_until, DetachError, Waited, Waker};
use crate::block::loop_device;
use crate::uevent_hub::Interest;

/// Waits until the loop device `name` no longer backs `file` (detached, rebound to another
/// file, or marked autoclear: being detached at its last close), woken by its `change`
/// uevent, or `deadline`. `file` is canonicalized first, as the kernel shows it.
///
/// Errors: [`DetachError::LoopStillAttached`] at the deadline; [`DetachError::Sysfs`] when its
/// sysfs directory cannot be read.
pub fn wait_for_loop_detached(
    sys_root: &Path,
    name: &str,
    file: &Path,
    deadline: Instant,
    waker: &mut Waker,
) -> Result<Waited, DetachError> {
    let want = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let interest = Interest::BlockDevice {
        name: name.to_string(),
    };
    let (done, waited) = wait_until(sys_root, interest, deadline, waker, || {
        let d = loop_device(sys_root, name).map_err(|source| DetachError::Sysfs {
            target: format!("loop device {name}"),
            source,
        })?;
        Ok::<_, DetachError>(d.is_none_or(|d| !d.backs(&want)).then_some(()))
    })?;
    match done {
        Some(()) => Ok(waited),
        None => Err(DetachError::LoopStillAttached {
            name: name.to_string(),
            file: want.display().to_string(),
            waited,
        }),
    }
}
