//! Exact ownership (SPEC §15) against identities twinops did not make: a hub that existed before
//! twinops (created through raw REST, as Microsoft's SDKs and `az` create them), two owners sharing
//! twins, ledgers of the first form, configurations that write declared keys, and export.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{command, dir, manifests, run, twin, twinops};
use crate::support::{Emulator, eventually, seg};

const T1: &str = "0123456789ABCDEF0123456789ABCDEF01234567";
const T2: &str = "89ABCDEF0123456789ABCDEF0123456789ABCDEF";

async fn put(em: &Emulator, path: &str, body: Value) -> Value {
    let r = em.put(path, body, None).await;
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.body
}

/// A hub as users have it before twinops: a disabled SAS device with a status reason, a
/// self-signed X.509 device, a CA-signed device with an X.509 module, an IoT Edge gateway with a
/// module that the edge runtime manages, a leaf child and an edge child.
async fn brownfield(em: &Emulator) {
    put(
        em,
        "/devices/bf-disabled",
        json!({"deviceId": "bf-disabled", "status": "disabled", "statusReason": "maintenance"}),
    )
    .await;
    put(
        em,
        "/devices/bf-x509",
        json!({"deviceId": "bf-x509", "authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": T1, "secondaryThumbprint": T2}}}),
    )
    .await;
    put(
        em,
        "/devices/bf-ca",
        json!({"deviceId": "bf-ca", "authentication": {"type": "certificateAuthority"}}),
    )
    .await;
    put(
        em,
        "/devices/bf-ca/modules/cam",
        json!({"deviceId": "bf-ca", "moduleId": "cam", "authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": T1, "secondaryThumbprint": T2}}}),
    )
    .await;
    let gw = put(
        em,
        "/devices/bf-edge",
        json!({"deviceId": "bf-edge", "capabilities": {"iotEdge": true}}),
    )
    .await;
    let scope = gw["deviceScope"].as_str().unwrap().to_string();
    put(
        em,
        "/devices/bf-edge/modules/proc",
        json!({"deviceId": "bf-edge", "moduleId": "proc", "managedBy": "iotEdge"}),
    )
    .await;
    put(
        em,
        "/devices/bf-leaf",
        json!({"deviceId": "bf-leaf", "deviceScope": scope}),
    )
    .await;
    put(
        em,
        "/devices/bf-edge-child",
        json!({"deviceId": "bf-edge-child", "capabilities": {"iotEdge": true},
               "parentScopes": [scope]}),
    )
    .await;
}

const BROWNFIELD_IDS: [&str; 6] = [
    "bf-disabled",
    "bf-x509",
    "bf-ca",
    "bf-edge",
    "bf-leaf",
    "bf-edge-child",
];

/// Manifests that declare only tags and desired keys of the brownfield hub.
fn site_team(extra_for_disabled: &str) -> String {
    format!(
        "owner: site-team\ndevices:\n  bf-disabled:\n    tags: {{site: munich}}\n{extra_for_disabled}  bf-x509: {{tags: {{site: munich}}}}\n  bf-ca:\n    tags: {{site: munich}}\n    modules:\n      cam: {{desired: {{fps: 10}}}}\n  bf-edge:\n    tags: {{site: munich}}\n    modules:\n      proc: {{desired: {{rate: 2}}}}\n  bf-leaf: {{tags: {{site: munich}}}}\n  bf-edge-child: {{tags: {{site: munich}}}}\n"
    )
}

/// Every identity of the hub (devices and modules), as the registry holds it: etag, keys,
/// status, scopes, capabilities, `managedBy`.
async fn identities(em: &Emulator) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for id in BROWNFIELD_IDS {
        let d = em.get(&format!("/devices/{}", seg(id))).await.body;
        if d["status"] == "disabled" {
            // Under SAS, IoT Hub refuses module operations on a disabled device (it has none).
            out.insert(id.to_string(), d);
            continue;
        }
        out.insert(id.to_string(), d);
        let mods = em.get(&format!("/devices/{}/modules", seg(id))).await;
        assert_eq!(mods.status, 200, "{mods:?}");
        for m in mods.body.as_array().unwrap() {
            let mid = m["moduleId"].as_str().unwrap();
            let mut m = m.clone();
            // Presence fields move with connections, not with writes.
            for k in [
                "connectionState",
                "connectionStateUpdatedTime",
                "lastActivityTime",
            ] {
                m.as_object_mut().unwrap().remove(k);
            }
            out.insert(format!("{id}/{mid}"), m);
        }
    }
    for d in out.values_mut() {
        for k in [
            "connectionState",
            "connectionStateUpdatedTime",
            "lastActivityTime",
        ] {
            d.as_object_mut().unwrap().remove(k);
        }
    }
    out
}

fn kinds(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let a = match c["module_id"].as_str() {
                Some(m) => format!("{}/{m}", c["device_id"].as_str().unwrap()),
                None => c["device_id"].as_str().unwrap().to_string(),
            };
            format!("{} {a}", c["kind"].as_str().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_brownfield_hub_under_manifests_of_tags_and_desired_keys_keeps_every_identity_as_it_is() {
    let em = Emulator::start();
    brownfield(&em).await;
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(d.path(), &[("fleet.yaml", &site_team(""))]);
    let before = identities(&em).await;

    let r = twinops(&em, &["plan", "--format", "json", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let plan = r.json();
    for k in kinds(&plan) {
        assert!(
            k.starts_with("update_device_twin ") || k.starts_with("update_module_twin "),
            "no identity change: {k}"
        );
    }
    assert_eq!(kinds(&plan).len(), 8, "6 device twins, 2 module twins");
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["adopt"] == true),
        "{plan}"
    );
    let text = twinops(&em, &["plan", p]).stdout;
    assert!(text.contains("update 6 device twins (adopt)"), "{text}");
    for word in ["status", "authentication", "iotEdge", "parent"] {
        assert!(!text.contains(&format!("{word}:")), "{word} in:\n{text}");
    }

    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        identities(&em).await,
        before,
        "no identity changed (etags, keys, status, scopes, managedBy)"
    );
    let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
    assert_eq!(r.code, 0, "the next plan is a no-op: {r:?}");

    // Declaring `status: enabled` enables exactly that device, keeping its status reason.
    manifests(
        d.path(),
        &[("fleet.yaml", &site_team("    status: enabled\n"))],
    );
    let r = twinops(&em, &["plan", "--format", "json", p]);
    let plan = r.json();
    assert_eq!(
        kinds(&plan),
        [
            "update_device bf-disabled",
            "update_device_twin bf-disabled"
        ],
        "{plan}"
    );
    assert_eq!(plan["changes"][0]["adopt"], true, "{plan}");
    assert_eq!(
        plan["changes"][0]["disruptive"],
        Value::Null,
        "enabling disconnects nobody"
    );
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let after = identities(&em).await;
    for (id, v) in &after {
        if id == "bf-disabled" {
            assert_eq!(v["status"], "enabled");
            assert_eq!(v["statusReason"], "maintenance", "kept: not declared");
            assert_eq!(v["authentication"], before[id]["authentication"]);
        } else {
            assert_eq!(v, &before[id], "{id} unchanged");
        }
    }
    let ledger = twin(&em, "bf-disabled").await["tags"]["twinops"].clone();
    assert_eq!(
        ledger["owners"]["site-team"]["fields"],
        json!({"status": true}),
        "{ledger}"
    );
    assert_eq!(
        twinops(&em, &["plan", "--detailed-exitcode", p]).code,
        0,
        "converged"
    );

    // Removing the line releases the field and leaves the device as it is.
    manifests(d.path(), &[("fleet.yaml", &site_team(""))]);
    let r = twinops(&em, &["plan", p]);
    assert!(
        r.stdout.contains("release status (stays \"enabled\")"),
        "{}",
        r.stdout
    );
    let plan = twinops(&em, &["plan", "--format", "json", p]).json();
    assert_eq!(plan["changes"][0]["action"], "release", "{plan}");
    assert_eq!(plan["changes"][0]["kind"], "release_device", "{plan}");
    let identity = em.get("/devices/bf-disabled").await.body;
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    let now = em.get("/devices/bf-disabled").await.body;
    assert_eq!(now["etag"], identity["etag"], "the identity is not written");
    assert_eq!(now["status"], "enabled", "released, left as it is");
    let ledger = twin(&em, "bf-disabled").await["tags"]["twinops"].clone();
    assert_eq!(
        ledger["owners"]["site-team"]["fields"],
        json!({}),
        "{ledger}"
    );
    assert_eq!(twinops(&em, &["plan", "--detailed-exitcode", p]).code, 0);
}

#[tokio::test]
async fn a_module_declared_with_another_managed_by_is_reported_never_written() {
    let em = Emulator::start();
    brownfield(&em).await;
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: o\ndevices:\n  bf-edge:\n    modules:\n      proc: {managedBy: someone-else, desired: {rate: 2}}\n",
        )],
    );
    let before = em.get("/devices/bf-edge/modules/proc").await.body;
    let r = twinops(&em, &["apply", "--yes", p]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains(
            "module `bf-edge/proc` declares managedBy `someone-else` but the hub has `iotEdge`"
        ),
        "{}",
        r.stderr
    );
    let after = em.get("/devices/bf-edge/modules/proc").await.body;
    assert_eq!(after["managedBy"], "iotEdge");
    assert_eq!(after["etag"], before["etag"]);
}

fn platform(site: &str, with_second: bool) -> String {
    let mut y = format!(
        "owner: platform\ndevices:\n  s-1:\n    tags: {{site: {site}, floor: 3}}\n    modules:\n      m: {{tags: {{site: {site}}}}}\n"
    );
    if with_second {
        y.push_str(&format!("  s-2: {{tags: {{site: {site}}}}}\n"));
    }
    y
}

fn app(telemetry: u32, site: Option<&str>) -> String {
    let site = site.map_or(String::new(), |s| format!("\n    tags: {{site: {s}}}"));
    format!(
        "owner: app\ndevices:\n  s-1:\n    desired: {{telemetry: {telemetry}}}{site}\n    modules:\n      m: {{desired: {{telemetry: {telemetry}}}}}\n  s-2: {{desired: {{telemetry: {telemetry}}}}}\n"
    )
}

/// Runs `apply --yes` of both directories at the same moment.
fn apply_both(em: &Emulator, a: &str, b: &str) -> (crate::cli::Run, crate::cli::Run) {
    let ca = command(em, &["apply", "--yes", a]);
    let cb = command(em, &["apply", "--yes", b]);
    let ta = std::thread::spawn(move || run(ca));
    let tb = std::thread::spawn(move || run(cb));
    (ta.join().unwrap(), tb.join().unwrap())
}

async fn owners_of(em: &Emulator, address: &str) -> Vec<String> {
    let t = twin(em, address).await;
    assert_eq!(t["tags"]["twinops"]["version"], 2, "{t}");
    let mut owners: Vec<String> = t["tags"]["twinops"]["owners"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    owners.sort();
    owners
}

#[tokio::test]
async fn two_owners_share_twins_with_disjoint_keys_conflict_on_overlaps_and_release_on_prune() {
    let em = Emulator::start();
    let (da, db) = (dir(), dir());
    let (a, b) = (da.path().to_str().unwrap(), db.path().to_str().unwrap());
    manifests(da.path(), &[("fleet.yaml", &platform("berlin", true))]);
    manifests(db.path(), &[("fleet.yaml", &app(30, None))]);

    // Both create the same identities at the same moment: one creates, the other adopts.
    let (ra, rb) = apply_both(&em, a, b);
    assert_eq!((ra.code, rb.code), (0, 0), "{ra:?}\n{rb:?}");
    // And both change their own keys at the same moment: the 412 rule resends each.
    manifests(da.path(), &[("fleet.yaml", &platform("munich", true))]);
    manifests(db.path(), &[("fleet.yaml", &app(60, None))]);
    let (ra, rb) = apply_both(&em, a, b);
    assert_eq!((ra.code, rb.code), (0, 0), "{ra:?}\n{rb:?}");
    for address in ["s-1", "s-1/m", "s-2"] {
        assert_eq!(
            owners_of(&em, address).await,
            ["app", "platform"],
            "{address}"
        );
    }
    let t = twin(&em, "s-1").await;
    assert_eq!(t["tags"]["site"], "munich");
    assert_eq!(t["properties"]["desired"]["telemetry"], 60);
    for p in [a, b] {
        let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
        assert_eq!(r.code, 0, "both are no-ops: {r:?}");
    }

    // An overlapping key is a conflict naming the other owner.
    manifests(db.path(), &[("fleet.yaml", &app(60, Some("paris")))]);
    let r = twinops(&em, &["plan", "--detailed-exitcode", b]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout
            .contains("conflict s-1: tags.site is managed by `platform`"),
        "{}",
        r.stdout
    );
    let etag = twin(&em, "s-1").await["etag"].clone();
    let r = twinops(&em, &["apply", "--yes", b]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(twin(&em, "s-1").await["etag"], etag, "nothing written");

    // --force-conflicts moves exactly that key, in one conditional write.
    let r = twinops(&em, &["apply", "--yes", "--force-conflicts", b]);
    assert_eq!(r.code, 0, "{r:?}");
    let t = twin(&em, "s-1").await;
    assert_eq!(t["tags"]["site"], "paris");
    let owners = &t["tags"]["twinops"]["owners"];
    assert_eq!(owners["app"]["tags"], json!({"site": true}), "{t}");
    assert_eq!(
        owners["platform"]["tags"],
        json!({"floor": true}),
        "platform keeps what it still manages: {t}"
    );

    // The first owner's next plan names the new manager and never takes the key back.
    let r = twinops(&em, &["plan", "--detailed-exitcode", a]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout
            .contains("conflict s-1: tags.site is managed by `app`"),
        "{}",
        r.stdout
    );
    let etag = twin(&em, "s-1").await["etag"].clone();
    let r = twinops(&em, &["apply", "--yes", a]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(twin(&em, "s-1").await["etag"], etag, "nothing written");
    assert_eq!(twin(&em, "s-1").await["tags"]["site"], "paris");

    // Prune by one owner of a shared device releases it and keeps the device.
    manifests(da.path(), &[("fleet.yaml", &platform("munich", false))]);
    let r = twinops(&em, &["plan", "--prune", "--format", "json", a]);
    let plan = r.json();
    let s2: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["device_id"] == "s-2")
        .collect();
    assert_eq!(s2.len(), 1, "{plan}");
    assert_eq!(s2[0]["kind"], "release_device");
    assert_eq!(plan["summary"]["delete"], 0);
    let r = twinops(&em, &["apply", "--yes", "--prune", a]);
    assert_eq!(r.code, 1, "s-1 is still a conflict for platform: {r:?}");
    assert_eq!(em.get("/devices/s-2").await.status, 200, "the device stays");
    let t = twin(&em, "s-2").await;
    assert_eq!(owners_of(&em, "s-2").await, ["app"], "{t}");
    assert!(t["tags"]["site"].is_null(), "platform's key removed: {t}");
    assert_eq!(t["properties"]["desired"]["telemetry"], 60);
}

#[tokio::test]
async fn three_owners_of_fifty_keys_fit_the_tag_budget_with_the_declared_tags() {
    let em = Emulator::start();
    let mut dirs = Vec::new();
    for (n, owner) in ["owner-one", "owner-two", "owner-three"].iter().enumerate() {
        // 50 keys of 24 characters each, distinct across owners.
        let keys: Vec<String> = (0..50)
            .map(|i| format!("o{n}-telemetry-{i:0>11}"))
            .collect();
        assert!(keys.iter().all(|k| k.len() == 24));
        let mut desired = String::new();
        for (i, k) in keys.iter().enumerate() {
            desired.push_str(&format!("{k}: {i}, "));
        }
        let y = format!(
            "owner: {owner}\ndevices:\n  shared:\n    tags: {{team{n}: {owner}}}\n    desired: {{{}}}\n",
            desired.trim_end_matches(", ")
        );
        let d = dir();
        manifests(d.path(), &[("fleet.yaml", &y)]);
        let r = twinops(&em, &["apply", "--yes", d.path().to_str().unwrap()]);
        assert_eq!(r.code, 0, "{owner}: {r:?}");
        dirs.push(d);
    }
    let t = twin(&em, "shared").await;
    let bytes = t["tags"].to_string().len();
    eprintln!("3 owners x 50 desired keys of 24 characters: tags are {bytes} bytes");
    assert!(bytes < 8 * 1024, "{bytes} bytes");
    assert_eq!(t["tags"]["twinops"]["owners"].as_object().unwrap().len(), 3);
    for d in &dirs {
        let r = twinops(
            &em,
            &["plan", "--detailed-exitcode", d.path().to_str().unwrap()],
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
}

#[tokio::test]
async fn a_ledger_of_the_first_form_plans_as_a_no_op_and_is_rewritten_on_the_next_change() {
    let em = Emulator::start();
    for id in ["old-1", "old-2"] {
        em.create_device(id).await;
        let r = em
            .patch(
                &format!("/twins/{id}"),
                json!({"tags": {"site": "x", "twinops": {"owner": "me", "tags": {"site": true}, "desired": {}}}}),
                Some("*"),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: me\ndevices:\n  old-1: {tags: {site: x}}\n  old-2: {tags: {site: x}}\n",
        )],
    );
    let r = twinops(&em, &["plan", "--detailed-exitcode", p]);
    assert_eq!(r.code, 0, "a turn-2 ledger plans as a no-op: {r:?}");

    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: me\ndevices:\n  old-1: {tags: {site: y}}\n  old-2: {tags: {site: x}}\n",
        )],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    let t = twin(&em, "old-1").await;
    assert_eq!(t["tags"]["site"], "y");
    assert_eq!(
        t["tags"]["twinops"],
        json!({"version": 2, "owners": {"me": {"fields": {}, "tags": {"site": true}, "desired": {}}}}),
        "rewritten in the new form"
    );
    assert_eq!(
        twin(&em, "old-2").await["tags"]["twinops"]["owner"],
        "me",
        "an untouched twin keeps its ledger"
    );

    // A second owner writing into an old-form ledger converts it and keeps the first entry.
    let o = dir();
    manifests(
        o.path(),
        &[(
            "fleet.yaml",
            "owner: other\ndevices:\n  old-2: {desired: {k: 1}}\n",
        )],
    );
    let r = twinops(&em, &["apply", "--yes", o.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let ledger = twin(&em, "old-2").await["tags"]["twinops"].clone();
    assert_eq!(ledger["version"], 2, "{ledger}");
    assert_eq!(ledger["owners"]["me"]["tags"], json!({"site": true}));
    assert_eq!(ledger["owners"]["other"]["desired"], json!({"k": true}));
    for p in [p, o.path().to_str().unwrap()] {
        assert_eq!(twinops(&em, &["plan", "--detailed-exitcode", p]).code, 0);
    }
}

#[tokio::test]
async fn a_configuration_writing_a_declared_key_is_named_with_its_priority_in_plan_and_drift() {
    let em = Emulator::start_with(&["--config-interval", "200ms"]);
    let d = dir();
    let p = d.path().to_str().unwrap();
    manifests(
        d.path(),
        &[(
            "fleet.yaml",
            "owner: rel\ndevices:\n  \"r-{1..3}\":\n    tags: {site: berlin}\n    desired: {v: 1, mode: eco}\n",
        )],
    );
    assert_eq!(twinops(&em, &["apply", "--yes", p]).code, 0);
    // Writes a value that differs from the manifest on r-2, and one that equals it on r-3.
    for (id, target, content) in [
        ("fw-rollout", "r-2", json!({"properties.desired.v": 7})),
        ("eco-mode", "r-3", json!({"properties.desired.mode": "eco"})),
    ] {
        let r = em
            .put(
                &format!("/configurations/{id}"),
                json!({"id": id, "content": {"deviceContent": content},
                       "targetCondition": format!("deviceId='{target}'"), "priority": 10}),
                None,
            )
            .await;
        assert!(r.status == 200 || r.status == 201, "{r:?}");
        eventually(
            "the configuration is applied by the emulator",
            Duration::from_secs(30),
            async || twin(&em, target).await["configurations"].clone(),
            |c| c[id]["status"] == "Applied",
        )
        .await;
    }

    let before = em.stats().await;
    let r = twinops(&em, &["plan", "--format", "json", p]);
    let after = em.stats().await;
    let plan = r.json();
    let warnings = plan["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{plan}");
    assert_eq!(warnings[0]["device_id"], "r-2");
    assert_eq!(warnings[0]["configuration"], "fw-rollout");
    assert_eq!(warnings[0]["priority"], 10);
    assert_eq!(warnings[0]["matches"], false);
    assert_eq!(warnings[1]["device_id"], "r-3");
    assert_eq!(warnings[1]["matches"], true);
    assert_eq!(
        crate::cli::class(&after, "configuration") - crate::cli::class(&before, "configuration"),
        2,
        "one read per configuration ID"
    );
    let r = twinops(&em, &["plan", p]);
    assert!(
        r.stdout.contains(
            "warning r-2: desired.v is also written by configuration `fw-rollout` (priority 10)"
        ),
        "{}",
        r.stdout
    );

    let before = em.stats().await;
    let r = twinops(&em, &["drift", "--format", "json", p]);
    let after = em.stats().await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        crate::cli::class(&after, "configuration") - crate::cli::class(&before, "configuration"),
        1,
        "drift lists the hub's objects once and reads the applied configurations from that list"
    );
    let items = r.json()["items"].as_array().unwrap().clone();
    let named: Vec<(String, String)> = items
        .iter()
        .filter(|i| i["detail"].as_str().unwrap().contains("configuration `"))
        .map(|i| {
            (
                i["device_id"].as_str().unwrap().to_string(),
                i["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("r-2".to_string(), "changed_in_hub".to_string()),
            ("r-3".to_string(), "configuration".to_string()),
        ],
        "{items:?}"
    );
    let r = twinops(&em, &["drift", p]);
    assert!(
        r.stdout.contains(
            "desired.v is also written by configuration `fw-rollout` (priority 10), which differs from the manifest"
        ),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn export_never_overwrites_and_an_exported_brownfield_hub_applied_back_changes_only_ledgers()
{
    let em = Emulator::start();
    brownfield(&em).await;
    put(
        &em,
        "/twins/bf-x509",
        json!({"tags": {"site": "munich"}, "properties": {"desired": {"interval": 5}}}),
    )
    .await;
    let d = dir();
    let out = d.path().join("exported");
    std::fs::create_dir_all(&out).unwrap();
    let kept = out.join("fleet.yaml");
    std::fs::write(&kept, "# hand-written\n").unwrap();
    let r = twinops(&em, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(&format!("`{}`", kept.display())),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "# hand-written\n");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing written"
    );

    let r = twinops(&em, &["export", "--force", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&kept).unwrap();
    for want in [
        "status: disabled",
        "statusReason: maintenance",
        "edge: true",
        "parent: bf-edge",
        T1,
        "auth: ca",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    let before = identities(&em).await;
    let plan = twinops(&em, &["plan", "--format", "json", out.to_str().unwrap()]).json();
    for c in plan["changes"].as_array().unwrap() {
        assert!(
            ["update_device_twin", "update_module_twin"].contains(&c["kind"].as_str().unwrap()),
            "{c}"
        );
        let diff: Vec<&str> = c["diff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(diff, ["tags.twinops"], "only the ledger: {c}");
    }
    let r = twinops(&em, &["apply", "--yes", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(identities(&em).await, before, "no identity changed");
    let r = twinops(&em, &["plan", "--detailed-exitcode", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[tokio::test]
async fn export_leaves_out_the_keys_another_owner_manages() {
    let em = Emulator::start();
    let (da, db) = (dir(), dir());
    manifests(da.path(), &[("fleet.yaml", &platform("berlin", true))]);
    manifests(db.path(), &[("fleet.yaml", &app(30, None))]);
    for p in [&da, &db] {
        let r = twinops(&em, &["apply", "--yes", p.path().to_str().unwrap()]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let d = dir();
    let out = d.path().join("x");
    let r = twinops(&em, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let platform = std::fs::read_to_string(out.join("platform/fleet.yaml")).unwrap();
    let app = std::fs::read_to_string(out.join("app/fleet.yaml")).unwrap();
    assert!(
        platform.contains("site") && !platform.contains("telemetry"),
        "{platform}"
    );
    assert!(app.contains("telemetry") && !app.contains("site"), "{app}");
    for owner in ["platform", "app"] {
        let r = twinops(
            &em,
            &[
                "plan",
                "--detailed-exitcode",
                out.join(owner).to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{owner}: {r:?}");
    }
}

#[tokio::test]
async fn a_saved_plan_whose_key_another_owner_took_over_meanwhile_names_that_owner() {
    let em = Emulator::start();
    let (da, db) = (dir(), dir());
    let (a, b) = (da.path().to_str().unwrap(), db.path().to_str().unwrap());
    manifests(da.path(), &[("fleet.yaml", &platform("berlin", true))]);
    assert_eq!(twinops(&em, &["apply", "--yes", a]).code, 0);
    manifests(da.path(), &[("fleet.yaml", &platform("munich", true))]);
    let saved = da.path().join("plan.json");
    let r = twinops(&em, &["plan", "--out", saved.to_str().unwrap(), a]);
    assert_eq!(r.code, 0, "{r:?}");
    // Meanwhile another owner takes the key over.
    manifests(db.path(), &[("fleet.yaml", &app(30, Some("paris")))]);
    let r = twinops(&em, &["apply", "--yes", "--force-conflicts", b]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = twinops(
        &em,
        &[
            "apply",
            "--yes",
            "--format",
            "json",
            "--plan",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let o = crate::cli::outcome(&r.json(), "status", "conflict");
    assert_eq!(o["device_id"], "s-1", "{o}");
    assert!(
        o["detail"]
            .as_str()
            .unwrap()
            .contains("tags.site is managed by `app`"),
        "{o}"
    );
    assert_eq!(twin(&em, "s-1").await["tags"]["site"], "paris");
}
