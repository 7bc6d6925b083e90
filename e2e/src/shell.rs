//! Shell commands on a test VM: locally with `sh -c`, or on node-b through its agent
//! (`rds-csi-e2e agent`), a tiny command runner on the VMs' private virtual wire.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::R;

/// Bound on reaching an agent.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one remote command (the longest is a `dd` of a few MiB with O_DIRECT under TCG).
const AGENT_COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `cmd` with `sh -c` here: (exit code, stdout + stderr).
pub async fn run_local(cmd: &str) -> R<(i32, String)> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("sh -c {cmd:?}: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text))
}

/// Runs `cmd` through the agent at `addr`: (exit code, stdout + stderr).
pub async fn run_remote(addr: &str, cmd: &str) -> R<(i32, String)> {
    let mut s = tokio::time::timeout(AGENT_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("agent {addr}: connect timed out"))?
        .map_err(|e| format!("agent {addr}: {e}"))?;
    s.write_all(cmd.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.shutdown().await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(AGENT_COMMAND_TIMEOUT, s.read_to_end(&mut buf))
        .await
        .map_err(|_| format!("agent {addr}: {cmd:?} timed out"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (code, rest) = text
        .split_once('\n')
        .ok_or_else(|| format!("agent {addr}: bad reply {text:?}"))?;
    Ok((code.trim().parse().unwrap_or(-1), rest.to_owned()))
}

/// `rds-csi-e2e agent --listen ADDR`: runs each connection's text with `sh -c` and answers
/// `<exit code>\n<stdout+stderr>`. Only on the test VMs' private virtual wire.
pub async fn agent(listen: &str) -> R<()> {
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("agent: bind {listen}: {e}"))?;
    println!("E2E-AGENT: listening on {listen}");
    loop {
        let (mut s, _) = l.accept().await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).await.is_err() {
                return;
            }
            let cmd = String::from_utf8_lossy(&buf).into_owned();
            let reply = match run_local(&cmd).await {
                Ok((code, out)) => format!("{code}\n{out}"),
                Err(e) => format!("-1\n{e}"),
            };
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}
