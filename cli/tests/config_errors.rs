//! A bad project file stops the server before it starts, naming file, line and column.

mod support;

use support::{project, project_with, refused};

#[test]
fn a_bad_route_is_reported_with_file_line_and_column_and_nothing_serves() {
    let (dir, config) = project(
        "  - method: POST\n    path: /user/{user-id}/activities\n    component: user-activity\n    worker: user-{userid}\n    call: add-activity\n    args: [\"{body.kind}\", \"{body.detail}\"]\n",
    );
    let (code, stderr, stdout) = refused("serve", dir.path(), &config);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let expected = format!(
        "{}:7:13: unknown placeholder `{{userid}}`",
        config.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    assert!(!stdout.contains("listening"));
    assert!(
        !dir.path().join("data").exists(),
        "a project that cannot serve must not touch its data"
    );
}

#[test]
fn a_route_whose_arguments_cannot_type_check_is_refused_at_load() {
    let (dir, config) = project(
        "  - method: POST\n    path: /user/{user-id}/activities\n    component: user-activity\n    worker: user-{user-id}\n    call: add-activity\n    args: [\"{body.kind}\"]\n",
    );
    let (code, stderr, _) = refused("check", dir.path(), &config);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("{}:4:13:", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("takes 2 argument(s) (kind: string, detail: string), the route gives 1"),
        "{stderr}"
    );
}

#[test]
fn check_lists_the_read_only_routes_and_openapi_marks_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, stdout) = support::refused("check", dir.path(), &support::demo_config());
    assert!(
        stdout.contains("read-only: GET /user/{user-id}/activities, GET /user/{user-id}/count"),
        "{stdout}"
    );
    let (_, _, printed) = support::refused("openapi", dir.path(), &support::demo_config());
    let doc: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let paths = &doc["paths"];
    assert_eq!(
        paths["/user/{user-id}/count"]["get"]["x-revenant-read-only"],
        true
    );
    assert!(
        paths["/user/{user-id}/activities"]["post"]
            .get("x-revenant-read-only")
            .is_none()
    );
}

/// A live-worker cap the machine cannot hold (past its mappings or the address space the
/// guests' memories reserve) is refused at its place in the file, with what would allow it.
#[test]
fn a_live_worker_cap_past_what_the_machine_allows_is_refused_where_it_is_written() {
    let (dir, config) = project_with(
        "limits:\n  guest_memory_mb: 4096\n  active_workers_max: 1000000\n",
        "  - method: GET\n    path: /user/{user-id}/count\n    component: user-activity\n    worker: user-{user-id}\n    call: count\n",
    );
    let (code, stderr, _) = refused("check", dir.path(), &config);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let at = format!(
        "{}:5:23: `active_workers_max` 1000000 needs ",
        config.display()
    );
    assert!(stderr.contains(&at), "expected `{at}` in:\n{stderr}");
    assert!(
        stderr.contains("vm.max_map_count") || stderr.contains("lower guest_memory_mb"),
        "{stderr}"
    );
}
