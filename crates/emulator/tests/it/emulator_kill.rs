//! Durability: every acknowledged write survives SIGKILL of the emulator, and the hub keeps its
//! owner key and hub ID across restarts on the same state directory.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::support::Emulator;
use serde_json::{Value, json};

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Emulator::start_on(dir.path());
    let owner_key = hub.owner_key.clone();
    let ca = std::fs::read_to_string(&hub.ca_path).unwrap();

    hub.create_device("d1").await;
    hub.create_module("d1", "m1").await;
    let twin = hub
        .patch(
            "/twins/d1/modules/m1",
            json!({"properties": {"desired": {"telemetryInterval": 122}}}),
            None,
        )
        .await;
    assert_eq!(twin.status, 200);
    let dtwin = hub
        .patch(
            "/twins/d1",
            json!({"tags": {"site": "berlin"}}),
            Some("\"*\""),
        )
        .await;
    assert_eq!(dtwin.status, 200);
    let rows: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("bulk-{i:02}"), "importMode": "create", "tags": {"n": i}}))
        .collect();
    let bulk = hub
        .call(
            reqwest::Method::POST,
            "/devices",
            Some(Value::Array(rows)),
            &[],
        )
        .await;
    assert_eq!(bulk.status, 200);
    let device_before = hub.get("/devices/d1").await.body;
    let module_twin_before = hub.get("/twins/d1/modules/m1").await.body;

    hub.kill();

    let hub = Emulator::start_on(dir.path());
    assert_eq!(
        hub.owner_key, owner_key,
        "the owner key is kept in the state"
    );
    assert_eq!(
        std::fs::read_to_string(&hub.ca_path).unwrap(),
        ca,
        "the certificate is kept"
    );
    assert_eq!(hub.get("/devices/d1").await.body, device_before);
    assert_eq!(
        hub.get("/twins/d1/modules/m1").await.body,
        module_twin_before
    );
    assert_eq!(hub.get("/twins/d1").await.body["tags"]["site"], "berlin");
    let count = hub
        .call(
            reqwest::Method::POST,
            "/devices/query",
            Some(json!({"query": "SELECT COUNT() AS n FROM devices"})),
            &[],
        )
        .await;
    assert_eq!(count.body, json!([{"n": 51}]));
    assert_eq!(hub.get("/twins/bulk-37").await.body["tags"]["n"], 37);
    // Writes go on where they left off: the next twin write moves the etag past the old one.
    let next = hub
        .patch(
            "/twins/d1/modules/m1",
            json!({"tags": {"x": 1}}),
            Some(&format!(
                "\"{}\"",
                module_twin_before["etag"].as_str().unwrap()
            )),
        )
        .await;
    assert_eq!(next.status, 200);
    assert_eq!(
        next.body["version"],
        module_twin_before["version"].as_i64().unwrap() + 1
    );
}

#[tokio::test]
async fn hub_id_and_keys_persist_in_process_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || twinops_emulator::Config {
        state: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let first = twinops_emulator::start(config()).await.unwrap();
    let id = first.hub_id().to_string();
    let key = first.policy_key("service").unwrap().expose().to_string();
    assert_eq!(id.len(), 32);
    first.shutdown().await;
    let second = twinops_emulator::start(config()).await.unwrap();
    assert_eq!(second.hub_id(), id);
    assert_eq!(second.policy_key("service").unwrap().expose(), key);
    second.shutdown().await;
    let other = tempfile::tempdir().unwrap();
    let third = twinops_emulator::start(twinops_emulator::Config {
        state: Some(other.path().to_path_buf()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_ne!(third.hub_id(), id, "another state is another hub");
    third.shutdown().await;
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_the_state_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Emulator::start_on(dir.path());
    hub.create_device("d").await;
    let status = hub.terminate();
    assert!(status.success(), "{status:?}");
    let hub = Emulator::start_on(dir.path());
    assert_eq!(hub.get("/devices/d").await.status, 200);
}

/// Each file under `dir` (recursively) and each directory, with its permission bits.
#[cfg(unix)]
fn modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.clone(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            out.extend(modes(&path));
        }
    }
    out
}

/// The state holds every policy key (SPEC §9): a state directory the emulator creates is 0700,
/// every file in it 0600. A directory that already exists keeps the mode its owner gave it (it
/// may be one they chose, `--state .`), but every file the emulator keeps there is made 0600
/// again on each start, so state written by an older version with wider modes is closed too.
#[cfg(unix)]
#[tokio::test]
async fn the_state_directory_and_its_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("new").join("state");
    let mut hub = Emulator::start_on(&state);
    hub.create_device("d1").await;
    assert!(hub.terminate().success());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "the state directory");
    assert_eq!(
        mode(&parent.path().join("new")),
        0o700,
        "a parent it created"
    );
    let found = modes(&state);
    for name in ["hub.redb", "tls", "key.pem", "cert.pem"] {
        assert!(
            found.iter().any(|(p, _, _)| p.file_name().unwrap() == name),
            "{name} in {found:?}"
        );
    }
    for (path, dir, m) in &found {
        assert_eq!(
            *m,
            if *dir { 0o700 } else { 0o600 },
            "{}: {m:o}",
            path.display()
        );
    }

    // Wider modes, as an older version left them: the files are closed again, the directories
    // stay as their owner set them.
    for (path, dir, _) in &found {
        let wide = if *dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wide)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut hub = Emulator::start_on(&state);
    assert_eq!(hub.get("/devices/d1").await.status, 200, "the same state");
    assert!(hub.terminate().success());
    assert_eq!(mode(&state), 0o755, "an existing directory keeps its mode");
    for (path, dir, m) in modes(&state) {
        if !dir {
            assert_eq!(m, 0o600, "{}: {m:o}", path.display());
        }
    }
}
