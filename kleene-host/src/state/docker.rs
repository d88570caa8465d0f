//! How Docker's networks and endpoints map onto kleene's: a Docker network is a kleene
//! network (one kleene created for it, or one it adopted), a Docker endpoint a kleene
//! container whose sandbox is Docker's (`containers.runtime`).

use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// The runtime name recorded on the containers of Docker endpoints.
pub const RUNTIME: &str = "docker";

/// A Docker network's kleene network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub docker_id: String,
    pub network_id: String,
    /// kleene created the network for Docker, and removes it with it.
    pub owned: bool,
}

/// A Docker endpoint's kleene container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    pub docker_id: String,
    pub docker_network: String,
    pub container_id: String,
    /// The endpoint took its addresses itself (another IPAM driver chose them), so it gives
    /// them back; addresses from kleene's IPAM go back with `ReleaseAddress`.
    pub took_addresses: bool,
}

/// Docker's ids: 64 lowercase hex digits.
pub fn is_docker_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn insert_network(db: &Connection, n: &DockerNetwork) -> Result<()> {
    db.execute(
        "INSERT INTO docker_networks (docker_id, network_id, owned) VALUES (?1, ?2, ?3)",
        params![n.docker_id, n.network_id, n.owned],
    )?;
    Ok(())
}

pub fn network(db: &Connection, docker_id: &str) -> Result<Option<DockerNetwork>> {
    Ok(db
        .query_row("SELECT docker_id, network_id, owned FROM docker_networks WHERE docker_id = ?1", [docker_id], |r| {
            Ok(DockerNetwork { docker_id: r.get(0)?, network_id: r.get(1)?, owned: r.get(2)? })
        })
        .optional()?)
}

/// The Docker network mapped onto kleene network `network_id`, if any.
pub fn network_of(db: &Connection, network_id: &str) -> Result<Option<String>> {
    Ok(db
        .query_row("SELECT docker_id FROM docker_networks WHERE network_id = ?1", [network_id], |r| r.get(0))
        .optional()?)
}

pub fn delete_network(db: &Connection, docker_id: &str) -> Result<()> {
    db.execute("DELETE FROM docker_networks WHERE docker_id = ?1", [docker_id])?;
    Ok(())
}

pub fn insert_endpoint(db: &Connection, e: &DockerEndpoint) -> Result<()> {
    db.execute(
        "INSERT INTO docker_endpoints (docker_id, docker_network, container_id, took_addresses) VALUES (?1, ?2, ?3, ?4)",
        params![e.docker_id, e.docker_network, e.container_id, e.took_addresses],
    )?;
    db.execute("UPDATE containers SET runtime = ?2 WHERE id = ?1", params![e.container_id, RUNTIME])?;
    Ok(())
}

pub fn endpoint(db: &Connection, docker_id: &str) -> Result<Option<DockerEndpoint>> {
    Ok(db
        .query_row(
            "SELECT docker_id, docker_network, container_id, took_addresses FROM docker_endpoints WHERE docker_id = ?1",
            [docker_id],
            |r| {
                Ok(DockerEndpoint {
                    docker_id: r.get(0)?,
                    docker_network: r.get(1)?,
                    container_id: r.get(2)?,
                    took_addresses: r.get(3)?,
                })
            },
        )
        .optional()?)
}

pub fn delete_endpoint(db: &Connection, docker_id: &str) -> Result<()> {
    db.execute("DELETE FROM docker_endpoints WHERE docker_id = ?1", [docker_id])?;
    Ok(())
}

/// The runtime that owns container `id`'s sandbox, if not kleene.
pub fn runtime_of(db: &Connection, container_id: &str) -> Result<Option<String>> {
    Ok(db
        .query_row("SELECT runtime FROM containers WHERE id = ?1", [container_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The first 12 digits of a Docker id, as `docker` shows them (all of a shorter text).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
