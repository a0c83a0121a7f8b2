//! `neuronmeet tail`: a durable JetStream consumer that prints room events. It doubles as the
//! example for downstream teams of consuming idempotently.

use crate::BoxError;
use std::collections::{HashSet, VecDeque};
use std::io::Write;

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer};
use futures_util::StreamExt;
use serde_json::Value;

/// Ids remembered for de-duplication. Redeliveries arrive soon after the original, so a
/// bounded window suffices; a real consumer keeps the ids it handled with its own writes.
const REMEMBERED_IDS: usize = 100_000;

pub async fn run(
    nats_url: &str,
    stream: &str,
    durable: &str,
    subject: &str,
) -> Result<(), BoxError> {
    let servers = crate::relay::nats_servers(nats_url)?;
    let js = jetstream::new(async_nats::connect(servers).await?);
    let consumer: PullConsumer = js
        .get_stream(stream)
        .await?
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: subject.to_owned(),
                ..Default::default()
            },
        )
        .await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<String> = VecDeque::new();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let event: Value = serde_json::from_slice(&message.payload)?;
        // The CloudEvents id (`<roomId>:<sequence>`) identifies an event across redeliveries.
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        if seen.insert(id.clone()) {
            let printed = writeln!(
                std::io::stdout(),
                "{} {} room={} sequence={} data={}",
                event["time"].as_str().unwrap_or_default(),
                event["type"].as_str().unwrap_or_default(),
                event["subject"].as_str().unwrap_or_default(),
                event["sequence"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_start_matches('0'),
                event["data"]
            );
            match printed {
                // The reader went away (`neuronmeet tail | head`): done, like any Unix filter.
                // The event is left unacknowledged, so the durable consumer shows it again.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
            order.push_back(id);
            if order.len() > REMEMBERED_IDS {
                if let Some(oldest) = order.pop_front() {
                    seen.remove(&oldest);
                }
            }
        }
        // Acknowledge only after handling: a crash before this line means redelivery, which
        // the id check above turns into a no-op.
        message.ack().await?;
    }
    Ok(())
}
