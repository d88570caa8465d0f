//! `kleene serve`: placeholder replaced below.
use crate::commands::Ctx;
use std::path::PathBuf;
pub fn serve(_ctx: &mut Ctx, _socket: PathBuf) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
