//! /docs in a real headless Chromium (Debian's `chromium`, which scripts/test installs): Swagger
//! UI renders /openapi.json from the service alone, shows POST /rooms, and logs no errors.

use std::process::Command;

use crate::common::TestApp;

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a headless Chromium must be installed (scripts/test installs Debian's chromium)")
}

#[tokio::test]
async fn the_docs_page_renders_offline_with_post_rooms_and_no_console_errors() {
    let app = TestApp::spawn().await;
    let profile = std::env::temp_dir().join(format!(
        "neuronmeet-chromium-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let url = app.url("/docs");
    let browser = chromium();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                // Lets the page's fetch of /openapi.json and its rendering finish before the dump.
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("NeuronMeet rooms API"),
        "the page did not render the document:\n{dom}"
    );
    assert!(
        dom.contains("id=\"operations-rooms-create_room\""),
        "POST /rooms is not shown:\n{dom}"
    );
    assert!(
        dom.contains("Create a room"),
        "the operation's summary is missing:\n{dom}"
    );
    let console: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .collect();
    assert!(console.is_empty(), "the console logged: {console:#?}");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Failed to load resource"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// As a new user would: "Authorize" with a token, "Try it out" on POST /rooms, "Execute"; the
/// page shows the 201 and the room, which is then in the database (tests/tools/
/// docs-try-it-out.mjs drives Debian's Chromium with playwright-core; requests leaving the
/// service's host fail the test, so the page must work offline).
#[tokio::test]
async fn try_it_out_on_the_docs_page_creates_a_room() {
    let app = TestApp::spawn().await;
    let (base, token) = (app.url(""), app.token("docs-user"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tools/docs-try-it-out.sh"
            ))
            .args([&base, &token])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = stdout.trim();
    let room: serde_json::Value = app.get_room(id, "docs-user").await.json().await.unwrap();
    assert_eq!(room["name"], "From the docs page");
    assert_eq!(room["hostId"], "docs-user");
}
