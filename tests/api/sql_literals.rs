//! Statements written out with their parameters as literals (one message for a whole write)
//! mean exactly what the same statements with bound parameters mean, for any text a client can
//! send.

use chrono::{DateTime, Utc};
use neuronmeet::sql::{self, Arg, Statement};
use serde_json::{json, Value};

use crate::common::TestApp;

const TEXTS: &[&str] = &[
    "plain",
    "it's",
    "''",
    r"back\slash",
    r"\'; DROP TABLE events; --",
    "E'x'",
    "$1 and $$dollar$$ and $tag$",
    "line\nbreak\ttab\r",
    "Zoë, Łódź, 東京, 🦀👩🏽‍💻",
    "\u{202e}reversed",
    "",
];

#[tokio::test]
async fn inlined_parameters_store_what_bound_ones_do() {
    let app = TestApp::spawn().await;
    let mut conn = app.db.acquire().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE literals (way text, n int, t text, j jsonb, at timestamptz, b bool, i int8)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let at: DateTime<Utc> = "2026-12-07T20:00:00.123456Z".parse().unwrap();
    let insert = |way: &str| {
        let count = TEXTS.len();
        Statement::new(
            "INSERT INTO literals SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], \
             $4::jsonb[], $5::timestamptz[], $6::bool[], $7::int8[])",
        )
        .arg(vec![way.to_owned(); count])
        .arg((0..count as i32).collect::<Vec<_>>())
        .arg(
            TEXTS
                .iter()
                .map(|t| Some(t.to_string()))
                .collect::<Vec<_>>(),
        )
        .arg(Arg::Jsons(
            TEXTS
                .iter()
                .map(|t| json!({"name": t, "n": [1, null]}))
                .collect(),
        ))
        .arg(
            (0..count)
                .map(|n| (n % 2 == 0).then_some(at))
                .collect::<Vec<_>>(),
        )
        .arg(
            (0..count)
                .map(|n| Some(n % 3 == 0))
                .collect::<Vec<Option<bool>>>(),
        )
        .arg(
            (0..count as i64)
                .map(|n| n - i64::MAX / 2)
                .collect::<Vec<_>>(),
        )
    };
    insert("bound").execute(&mut conn).await.unwrap();
    let message = sql::message([&insert("inlined")]).unwrap();
    sqlx::raw_sql(&message).execute(&mut *conn).await.unwrap();
    // Empty arrays and NULLs take their types from the statement's casts.
    let empty = Statement::new("INSERT INTO literals (t) SELECT * FROM UNNEST($1::text[])")
        .arg(Vec::<String>::new());
    sqlx::raw_sql(&sql::message([&empty]).unwrap())
        .execute(&mut *conn)
        .await
        .unwrap();

    let rows = |way: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, Value>(
                "SELECT json_agg(json_build_array(n, t, j, at, b, i) ORDER BY n) \
                   FROM literals WHERE way = $1",
            )
            .bind(way)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let bound = rows("bound").await;
    assert_eq!(bound.as_array().unwrap().len(), TEXTS.len());
    assert_eq!(rows("inlined").await, bound);
    assert_eq!(
        app.count("SELECT count(*) FROM literals").await as usize,
        2 * TEXTS.len()
    );
}
