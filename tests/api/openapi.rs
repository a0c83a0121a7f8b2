//! The OpenAPI document describes every route, and every route it describes exists.

use crate::common::TestApp;
use serde_json::Value;

/// Routes registered with axum directly (`.route(`) would be missing from the document, which
/// is generated from `routes!(...)` registrations. None may exist.
#[test]
fn every_route_is_registered_through_the_openapi_router() {
    let mut folders = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http"
    ))];
    let mut offenders = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            // utoipa-axum's router is the documented way; only axum's own is an offender.
            let source = std::fs::read_to_string(&path)
                .unwrap()
                .replace("OpenApiRouter::new().routes(", "");
            for needle in [
                ".route(",
                ".route_service(",
                ".nest_service(",
                "Router::new().route",
            ] {
                if source.contains(needle) {
                    offenders.push(format!("{} uses {needle}", path.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "undocumented routes: {offenders:?}");
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_answers() {
    let app = TestApp::spawn().await;
    let doc = app.get_json("/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            let url = app.url(&path.replace("{id}", "x").replace("{code}", "abc-def-ghi"));
            let method_name = method.to_uppercase();
            let request = app.client.request(
                reqwest::Method::from_bytes(method_name.as_bytes()).unwrap(),
                url,
            );
            let status = request.send().await.unwrap().status();
            // 404 is right for the made-up ids; it must be the route's own problem, not "no route".
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let problem: Value = app
                    .client
                    .request(
                        reqwest::Method::from_bytes(method_name.as_bytes()).unwrap(),
                        app.url(&path.replace("{id}", "x").replace("{code}", "abc-def-ghi")),
                    )
                    .bearer_auth(app.token("u"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_ne!(
                    problem["detail"], "no such resource",
                    "{method} {path} is not routed"
                );
            }
        }
    }
    assert!(operations >= 11, "only {operations} operations documented");
    let create = &paths["/rooms"]["post"];
    for status in ["201", "400", "401", "413", "503"] {
        assert!(
            create["responses"][status].is_object(),
            "POST /rooms lacks {status}"
        );
    }
}
