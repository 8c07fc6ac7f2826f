//! The commands that only read the store (`orders`, `events`,
//! `dead-letters`) never create one: where `state_dir` holds no store they
//! say so and leave nothing behind. And a `state_dir` that is a file (or
//! lies under one) is named as such, with no talk of salvage.

use crate::helpers::*;

const READERS: [&[&str]; 6] = [
    &["orders", "list"],
    &["orders", "show", "100001"],
    &["events"],
    &["dead-letters", "list"],
    &["dead-letters", "replay", "--all"],
    &["dead-letters", "replay", "hook:1"],
];

/// A workspace whose config points at a simulator that is never asked:
/// these commands do not poll.
fn workspace() -> Workspace {
    current_tracking_workspace("http://127.0.0.1:9", "http://127.0.0.1:9/hook", "", "")
}

#[tokio::test]
async fn reading_commands_on_a_missing_store_say_so_and_create_nothing() {
    let ws = workspace();
    let missing = ws.dir.path().join("data");
    for args in READERS {
        let out = ws.run(args).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains(&format!(
                "there is no orderwatch store at {}",
                missing.display()
            )) && all.contains("`orderwatch run` or `orderwatch once` creates it"),
            "{args:?}: {all}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[tokio::test]
async fn reading_commands_on_an_empty_directory_leave_it_empty() {
    let ws = workspace();
    let empty = ws.dir.path().join("data");
    std::fs::create_dir(&empty).unwrap();
    for args in READERS {
        let out = ws.run(args).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(all.contains("there is no orderwatch store at"), "{all}");
        assert_eq!(
            std::fs::read_dir(&empty).unwrap().count(),
            0,
            "{args:?} wrote into {}",
            empty.display()
        );
    }
}

#[tokio::test]
async fn a_state_dir_under_a_file_is_named_and_not_salvaged() {
    let ws = workspace();
    let file = ws.dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let state_dir = file.join("data");
    ws.set_state_dir(&state_dir);
    for args in [&["once"][..], &["orders", "list"][..], &["events"][..]] {
        let out = ws.run(args).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {all}");
        assert!(
            all.contains(&format!(
                "state_dir {} is not a directory: {} is a file",
                state_dir.display(),
                file.display()
            )) && !all.contains("salvage"),
            "{args:?}: {all}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}
