//! Micro-benchmarks of the per-order work of a cycle: reading an order
//! (`diff::observe`), comparing it with its snapshot (`diff::compare`), and
//! serialising the event it gives (the webhook body).
//!
//! `cargo bench --bench diff`

use criterion::{Criterion, criterion_group, criterion_main};
use orderwatch::Snapshot;
use orderwatch::diff::{self, Outcome, Rules};
use serde_json::value::RawValue;
use std::hint::black_box;

/// An order shaped like the simulator's (and Orange's) tracking orders.
fn order(status: &str, note: &str) -> String {
    serde_json::json!({
        "id": "1234567",
        "externalId": "W61X9260521",
        "status": status,
        "type": "Business VPN",
        "category": "NEW",
        "priority": "MEDIUM",
        "createdAt": "2026-03-04T05:06:07Z",
        "updatedAt": "2026-05-06T07:08:09Z",
        "expectedDeliveryDate": "2026-06-30",
        "note": note,
        "request": { "id": "3-1234567", "status": "In Progress", "step": "DELIVERY" },
        "customer": { "id": "33-01257052", "name": "ACME Industries" },
        "contacts": [
            { "role": "technical", "firstName": "Camille", "lastName": "MARTIN",
              "email": "camille.martin@example.com", "phone": "+33 1 23 45 67 89" },
            { "role": "commercial", "firstName": "Lucas", "lastName": "BERNARD",
              "email": "lucas.bernard@example.com", "phone": "+33 1 98 76 54 32" }
        ],
        "location": { "street": "Route DE SAALES", "city": "SAINT-DIE-DES-VOSGES",
                      "postalCode": "88100", "country": "FR" },
        "properties": [
            { "name": "bandwidth", "value": "100 Mbps" },
            { "name": "domain", "value": "DATA" },
            { "name": "siteCode", "value": "SDV-0042" }
        ],
        "attachments": [ { "name": "quote.pdf", "size": 182734 } ]
    })
    .to_string()
}

fn rules() -> Rules {
    Rules {
        source: "tracking".into(),
        id_field: "/id".into(),
        status_field: "/status".into(),
        watch: vec!["/request/status".into(), "/expectedDeliveryDate".into()],
        closed_statuses: vec!["Closed".into()],
    }
}

fn snapshot_of(json: &str) -> Snapshot {
    let raw = RawValue::from_string(json.to_owned()).unwrap();
    let observed = diff::observe(&raw, &rules()).unwrap();
    Snapshot {
        revision: 3,
        hash: observed.hash,
        listed: true,
        status: observed.status,
        changed_at: "2026-11-22T08:00:00Z".into(),
        order: json.to_owned(),
    }
}

fn benches(c: &mut Criterion) {
    let rules = rules();
    let before = order("Current", "");
    let prev = snapshot_of(&before);
    let closed = RawValue::from_string(order("Closed", "")).unwrap();
    let noted = RawValue::from_string(order("Current", "customer called")).unwrap();
    let same = RawValue::from_string(before.clone()).unwrap();
    let ts = "2026-11-22T09:00:00Z";

    c.bench_function("observe (parse one order)", |b| {
        b.iter(|| diff::observe(black_box(&closed), &rules).unwrap())
    });

    let now_same = diff::observe(&same, &rules).unwrap();
    c.bench_function("compare: unchanged", |b| {
        b.iter(|| diff::compare(black_box(&prev), black_box(&now_same), &rules, true, ts))
    });
    let now_noted = diff::observe(&noted, &rules).unwrap();
    c.bench_function("compare: unwatched field changed (refresh)", |b| {
        b.iter(|| diff::compare(black_box(&prev), black_box(&now_noted), &rules, true, ts))
    });
    let now_closed = diff::observe(&closed, &rules).unwrap();
    c.bench_function("compare: status changed (event)", |b| {
        b.iter(|| diff::compare(black_box(&prev), black_box(&now_closed), &rules, true, ts))
    });

    let Outcome::Changed(_, event) = diff::compare(&prev, &now_closed, &rules, true, ts) else {
        panic!("a status change gives an event");
    };
    c.bench_function("serialise one event (webhook body)", |b| {
        b.iter(|| serde_json::to_string(black_box(&event)).unwrap())
    });
}

criterion_group!(micro, benches);
criterion_main!(micro);
