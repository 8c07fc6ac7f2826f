//! Realistic, deterministic orders for both APIs: the same seed gives the same
//! documents. Shapes follow Orange's guides (ids like `123456` and
//! `W61X9260521`, customers `33-…`, requests `3-…`), filled out with the
//! nested fields real orders carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// Generated orders are created between 2026-01-01 and 300 days later, so
/// the data is the same whatever day it is generated on.
const CREATED_FROM: u64 = 1_767_225_600;
const CREATED_SPAN: u64 = 300 * 86_400;

/// Share of generated tracking orders that are still `Current`.
const CURRENT_SHARE: f64 = 0.8;

pub(crate) const TRACKING_CURRENT_STATES: &[&str] = &[
    "Acknowledged",
    "In Progress",
    "Scheduled",
    "Pending Customer",
];
pub(crate) const ORDERING_STEPS: &[&str] = &["REQUEST", "VALIDATION", "DELIVERY", "COMPLETED"];
/// The statuses of Ordering's orders an order can leave, and those it ends in.
pub(crate) const ORDER_OPEN_STATUSES: &[&str] = &["NEW", "IN_PROGRESS", "AWAITING_CUSTOMER_ACTION"];

const CUSTOMERS: &[&str] = &[
    "demo.gcompte",
    "ACME Industries",
    "Globex Logistique",
    "Initech France",
    "Umbrella Pharma",
    "Stark Energie",
    "Wayne Retail",
    "Hooli Europe",
    "Vandelay Import",
    "Cyberdyne Systemes",
    "Tyrell Manufacturing",
    "Nakatomi Trading",
];
const CONTACTS: &[(&str, &str)] = &[
    ("Camille", "MARTIN"),
    ("Lucas", "BERNARD"),
    ("Chloe", "DUBOIS"),
    ("Hugo", "THOMAS"),
    ("Lea", "ROBERT"),
    ("Nathan", "RICHARD"),
    ("Manon", "PETIT"),
    ("Louis", "DURAND"),
    ("John", "DOE"),
];
const CITIES: &[(&str, &str)] = &[
    ("PARIS", "75015"),
    ("LYON", "69003"),
    ("NANTES", "44000"),
    ("RENNES", "35000"),
    ("LILLE", "59000"),
    ("TOULOUSE", "31000"),
    ("SAINT-DIE-DES-VOSGES", "88100"),
    ("MARSEILLE", "13002"),
];
const STREETS: &[&str] = &[
    "Route DE SAALES",
    "Rue de la Gare",
    "Avenue Jean Jaures",
    "Boulevard Pasteur",
    "Rue du Moulin",
    "Place de la Republique",
];
const PRIORITIES: &[&str] = &["LOW", "MEDIUM", "MEDIUM", "MEDIUM", "HIGH", "CRITICAL"];
const CATEGORIES: &[&str] = &["NEW", "NEW", "NEW", "MODIFY", "MOVE", "CEASE"];
const TRACKING_TYPES: &[&str] = &[
    "Business VPN",
    "Business Internet",
    "Ethernet Link",
    "Flexible SD-WAN",
    "Business Talk",
    "Evolution Platform",
];
const ORDERING_TYPES: &[&str] = &[
    "C_GENERIC_S1",
    "R_BVPN_S1A",
    "R_INTERNET_S1",
    "R_ETHERNET_S1",
    "C_SDWAN_S2",
];
const BANDWIDTHS: &[&str] = &["10 Mbps", "50 Mbps", "100 Mbps", "1 Gbps", "10 Gbps"];
const DOMAINS: &[&str] = &["DATA", "DATA", "VOICE", "MOBILE"];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // Every list above is a non-empty constant.
    &items[rng.random_range(0..items.len())]
}

/// `2026-03-04T05:06:07Z`
pub(crate) fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `2026-03-04T05:06:07.123Z`: Ordering's orders carry milliseconds, so
/// that two changes within a second still get distinct, increasing stamps.
pub(crate) fn rfc3339_millis(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(CREATED_FROM * 1000)
}

/// The `updatedAt` of an order changed now, in the format its previous one
/// had: whole seconds as the guides show, or milliseconds (then always
/// later than the previous one, even within the same millisecond).
pub(crate) fn next_stamp(previous: Option<&str>) -> String {
    match previous {
        Some(text) if text.contains('.') => {
            let before = humantime::parse_rfc3339(text)
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(0));
            let now = now_millis();
            rfc3339_millis(before.map_or(now, |b| now.max(b + 1)))
        }
        _ => rfc3339(now_secs()),
    }
}

/// The start of today (UTC), in unix seconds: due dates are generated
/// relative to the simulator's clock, a whole number of days ahead, so an
/// order's date does not change with the second it was generated in.
fn today_secs() -> u64 {
    now_secs() / 86_400 * 86_400
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(CREATED_FROM)
}

fn customer(rng: &mut StdRng) -> Value {
    let index = rng.random_range(0..CUSTOMERS.len());
    json!({
        "id": format!("33-{:08}", 1_257_052 + index * 7_919),
        "name": CUSTOMERS[index],
    })
}

fn contact(rng: &mut StdRng) -> (String, String, String) {
    let (first, last) = *pick(rng, CONTACTS);
    let email = format!(
        "{}.{}@example.com",
        first.to_lowercase(),
        last.to_lowercase()
    );
    (first.to_owned(), last.to_owned(), email)
}

/// Where ids come from: tracking ids are fixed-width decimal numbers, so
/// sorting them as strings sorts them as numbers; ordering ids encode a
/// running index (scrambled so neighbours do not look alike) and the day the
/// request was made, like `W61X9260521`.
#[derive(Debug, Clone)]
pub(crate) struct IdSource {
    tracking_base: u64,
    next_tracking: u64,
    next_ordering: u64,
    next_order: u64,
}

impl IdSource {
    pub(crate) fn new(orders: usize) -> IdSource {
        // Six digits as in Orange's examples, more if the generated orders and
        // room for as many again from churn would not fit.
        let mut base: u64 = 100_000;
        while base.saturating_mul(9) < (orders as u64).saturating_mul(2).saturating_add(1000) {
            base = base.saturating_mul(10);
        }
        IdSource {
            tracking_base: base,
            next_tracking: 0,
            next_ordering: 0,
            next_order: 0,
        }
    }

    pub(crate) fn next_tracking(&mut self) -> String {
        self.next_tracking += 1;
        (self.tracking_base + self.next_tracking).to_string()
    }

    pub(crate) fn next_ordering(&mut self, created_secs: u64) -> String {
        let index = self.next_ordering;
        self.next_ordering += 1;
        coded_id('W', index, created_secs)
    }

    /// An Ordering order's id: `O` and the same shape as a request's.
    pub(crate) fn next_order(&mut self, created_secs: u64) -> String {
        let index = self.next_order;
        self.next_order += 1;
        coded_id('O', index, created_secs)
    }
}

fn coded_id(prefix: char, index: u64, created_secs: u64) -> String {
    const SPACE: u64 = 36 * 36 * 36 * 36;
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // Multiplying by a number prime to 36^4 permutes 0..36^4, so the first
    // 1.6 million ids are distinct whatever their dates.
    let mut code = (index.wrapping_mul(1_000_003) + 611_953) % SPACE;
    let mut letters = [b'0'; 4];
    for slot in letters.iter_mut().rev() {
        *slot = DIGITS[(code % 36) as usize];
        code /= 36;
    }
    let day = rfc3339(created_secs);
    // YYYY-MM-DD → DDMMYY
    let ddmmyy = format!("{}{}{}", &day[8..10], &day[5..7], &day[2..4]);
    format!("{prefix}{}{}", String::from_utf8_lossy(&letters), ddmmyy)
}

pub(crate) fn tracking_order(
    rng: &mut StdRng,
    id: &str,
    created: u64,
    updated: u64,
    open: bool,
) -> Value {
    let reference = format!(
        "PO-{}-{:06}",
        &rfc3339(created)[..4],
        rng.random_range(0..1_000_000)
    );
    let (status, request_status) = if open {
        ("Current", *pick(rng, TRACKING_CURRENT_STATES))
    } else if rng.random_bool(0.9) {
        ("Closed", "Completed")
    } else {
        ("Closed", "Cancelled")
    };
    let (first, last, email) = contact(rng);
    let (city, _) = *pick(rng, CITIES);
    let lead_days = rng.random_range(14..90);
    let planned = created + lead_days * 86_400;
    // As Orange's Ordering orders date their delivery (a plain date here:
    // the start of that day in the source's timezone).
    let expected = today_secs() + lead_days * 86_400;
    json!({
        "id": id,
        "customerReference": reference,
        "status": status,
        "priority": pick(rng, PRIORITIES),
        "customer": customer(rng),
        "type": pick(rng, TRACKING_TYPES),
        "category": pick(rng, CATEGORIES),
        "createdAt": rfc3339(created),
        "updatedAt": rfc3339(updated),
        "request": {
            "id": format!("3-{:08}", rng.random_range(0..100_000_000)),
            "customerReference": reference,
            "status": request_status,
            "orangeContact": { "name": format!("{first} {last}"), "email": email },
        },
        "properties": {
            "serviceId": format!("SVC-{:07}", rng.random_range(0..10_000_000)),
            "bandwidth": pick(rng, BANDWIDTHS),
            "plannedDeliveryDate": &rfc3339(planned)[..10],
            "site": { "name": format!("SITE {city} {}", rng.random_range(1..40)), "city": city, "country": "FR" },
        },
        "keyDates": { "expectedAt": &rfc3339(expected)[..10] },
    })
}

pub(crate) fn ordering_request(
    rng: &mut StdRng,
    id: &str,
    created: u64,
    updated: u64,
    step: &str,
) -> Value {
    let (first, last, email) = contact(rng);
    let (city, postal_code) = *pick(rng, CITIES);
    let planned = created + rng.random_range(14..90) * 86_400;
    json!({
        "id": id,
        "customerReference": format!("#REF-{:06}", rng.random_range(0..1_000_000)),
        "step": step,
        "isArchived": step == "COMPLETED",
        "priority": pick(rng, PRIORITIES),
        "customer": customer(rng),
        "type": pick(rng, ORDERING_TYPES),
        "category": pick(rng, CATEGORIES),
        "createdAt": rfc3339(created),
        "updatedAt": rfc3339(updated),
        "properties": {
            "domain": pick(rng, DOMAINS),
            "installationPlannedAt": &rfc3339(planned)[..10],
            "location": {
                "name": format!("{} - {city} {}", pick(rng, CUSTOMERS), rng.random_range(1..9)),
                "address": {
                    "street": format!("{} {}", rng.random_range(1..120), pick(rng, STREETS)),
                    "postalCode": postal_code,
                    "city": city,
                    "country": "FR",
                },
                "primaryContact": { "firstName": first, "lastName": last, "email": email },
            },
            "servicePoint": { "id": format!("5-{:010}", rng.random_range(0..10_000_000_000u64)) },
        },
        "attachments": [],
    })
}

/// The fields of an Ordering order that follow from its status: its step
/// and sub-step, and whether it is archived.
pub(crate) fn order_stage(status: &str) -> (&'static str, &'static str) {
    match status {
        "NEW" => ("ORDER_INITIATION", "PENDING_APPROVAL"),
        "IN_PROGRESS" => ("ORDER_DELIVERY", "IN_PROGRESS"),
        "AWAITING_CUSTOMER_ACTION" => ("ORDER_DELIVERY", "LOCAL_VALIDATION"),
        "COMPLETED" => ("ORDER_ACCEPTANCE", "COMPLETED"),
        _ => ("ORDER_INITIATION", "UNKOWN"),
    }
}

/// An Ordering order (the commercial order a request results in), shaped
/// like Orange's published `Order`: status, step and sub-step, delivery
/// status, `isOverdue`, nested `keyDates`, `_links`.
pub(crate) fn ordering_order(
    rng: &mut StdRng,
    id: &str,
    created: u64,
    updated: u64,
    status: &str,
) -> Value {
    let (first, last, email) = contact(rng);
    let (city, postal_code) = *pick(rng, CITIES);
    let request_id = format!(
        "W{:04}{}",
        rng.random_range(0..10_000),
        &id[id.len().saturating_sub(6)..]
    );
    let expected = today_secs() + rng.random_range(21..120) * 86_400;
    let (step, sub_step) = order_stage(status);
    let open = ORDER_OPEN_STATUSES.contains(&status);
    let delivery_status = match status {
        "AWAITING_CUSTOMER_ACTION" => "ON_HOLD",
        _ if open && rng.random_bool(0.2) => "DELAYED",
        _ => "ON_TRACK",
    };
    let mut key_dates = json!({
        "issuedAt": rfc3339(created),
        "requestedAt": rfc3339(created + rng.random_range(7..30) * 86_400),
        "expectedAt": rfc3339(expected),
    });
    match status {
        "COMPLETED" => key_dates["completedAt"] = rfc3339(updated).into(),
        "CANCELLED" | "REJECTED" | "EXPIRED" => key_dates["cancelledAt"] = rfc3339(updated).into(),
        _ => {}
    }
    json!({
        "id": id,
        "customerReference": format!("#ORD-{:06}", rng.random_range(0..1_000_000)),
        "customerPurchaseOrder": format!("PO-{:07}", rng.random_range(0..10_000_000)),
        "agreement": { "id": format!("AGR-{:05}", rng.random_range(0..100_000)) },
        "customer": customer(rng),
        "request": { "id": request_id, "name": pick(rng, ORDERING_TYPES), "customerReference": format!("#REF-{:06}", rng.random_range(0..1_000_000)) },
        "type": pick(rng, ORDERING_TYPES),
        "category": pick(rng, &["NEW", "NEW", "NEW", "CHANGE", "DISCONNECT"]),
        "status": status,
        "step": step,
        "subStep": sub_step,
        "deliveryStatus": delivery_status,
        "isOverdue": delivery_status == "DELAYED" && rng.random_bool(0.5),
        "isArchived": !open && rng.random_bool(0.5),
        "keyDates": key_dates,
        "servicePoint": {
            "id": format!("5-{:010}", rng.random_range(0..10_000_000_000u64)),
            "name": format!("{} - {city} {}", pick(rng, CUSTOMERS), rng.random_range(1..9)),
            "address": { "postalCode": postal_code, "city": city, "country": "FR" },
        },
        "primaryContact": { "firstName": first, "lastName": last, "email": email },
        "createdAt": rfc3339_millis(created * 1000),
        "updatedAt": rfc3339_millis(updated * 1000),
        "_links": {
            "self": { "href": format!("/ordering/b2b/v2/orders/{id}") },
            "request": { "href": format!("/ordering/b2b/v2/requests/{request_id}") },
        },
    })
}

fn created_and_updated(rng: &mut StdRng) -> (u64, u64) {
    let created = CREATED_FROM + rng.random_range(0..CREATED_SPAN);
    let updated = created + rng.random_range(0..20 * 86_400);
    (created, updated)
}

pub(crate) fn tracking_rng(seed: u64) -> StdRng {
    rand::SeedableRng::seed_from_u64(seed ^ 0x7472_6163_6b69_6e67)
}

pub(crate) fn ordering_rng(seed: u64) -> StdRng {
    rand::SeedableRng::seed_from_u64(seed ^ 0x6f72_6465_7269_6e67)
}

/// The tracking orders a simulator starts with, ids in ascending order.
pub(crate) fn tracking_orders_from(rng: &mut StdRng, ids: &mut IdSource, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let (created, updated) = created_and_updated(rng);
            let open = rng.random_bool(CURRENT_SHARE);
            tracking_order(rng, &ids.next_tracking(), created, updated, open)
        })
        .collect()
}

/// The ordering requests a simulator starts with: a fifth at each of the
/// first two steps, two fifths in delivery, a fifth completed and archived.
pub(crate) fn ordering_requests_from(rng: &mut StdRng, ids: &mut IdSource, n: usize) -> Vec<Value> {
    const STEP_WEIGHTS: &[usize] = &[0, 1, 2, 2, 3];
    (0..n)
        .map(|_| {
            let (created, updated) = created_and_updated(rng);
            let step = ORDERING_STEPS[*pick(rng, STEP_WEIGHTS)];
            ordering_request(rng, &ids.next_ordering(created), created, updated, step)
        })
        .collect()
}

pub(crate) fn orders_rng(seed: u64) -> StdRng {
    rand::SeedableRng::seed_from_u64(seed ^ 0x6f72_6465_7273_7632)
}

/// The Ordering orders a simulator starts with: most open, a third closed.
pub(crate) fn ordering_orders_from(rng: &mut StdRng, ids: &mut IdSource, n: usize) -> Vec<Value> {
    const STATUS_WEIGHTS: &[&str] = &[
        "NEW",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "AWAITING_CUSTOMER_ACTION",
        "COMPLETED",
        "COMPLETED",
        "COMPLETED",
        "CANCELLED",
        "REJECTED",
        "EXPIRED",
    ];
    (0..n)
        .map(|_| {
            let (created, updated) = created_and_updated(rng);
            let status = *pick(rng, STATUS_WEIGHTS);
            ordering_order(rng, &ids.next_order(created), created, updated, status)
        })
        .collect()
}

#[cfg(test)]
pub(crate) fn tracking_orders(seed: u64, n: usize) -> Vec<Value> {
    tracking_orders_from(&mut tracking_rng(seed), &mut IdSource::new(n), n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_orders() {
        assert_eq!(tracking_orders(3, 50), tracking_orders(3, 50));
        assert_ne!(tracking_orders(3, 50), tracking_orders(4, 50));
    }

    #[test]
    fn tracking_ids_are_fixed_width_and_sort_numerically() {
        let orders = tracking_orders(1, 2000);
        let ids: Vec<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(ids.iter().all(|id| id.len() == 6));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let current = orders.iter().filter(|o| o["status"] == "Current").count();
        assert!(
            (1400..1800).contains(&current),
            "about 80% current, got {current}"
        );
    }

    #[test]
    fn ordering_ids_are_unique_and_look_like_oranges() {
        let mut ids = IdSource::new(10);
        let mut rng = ordering_rng(1);
        let requests = ordering_requests_from(&mut rng, &mut ids, 5000);
        let unique: HashSet<&str> = requests.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(unique.len(), 5000);
        for request in &requests {
            let id = request["id"].as_str().unwrap_or_default();
            assert_eq!(id.len(), 11, "{id}");
            assert!(id.starts_with('W'));
            assert_eq!(request["isArchived"], request["step"] == "COMPLETED");
        }
    }

    const ORDER_CLOSED_STATUSES: &[&str] = &["COMPLETED", "CANCELLED", "REJECTED", "EXPIRED"];

    #[test]
    fn ordering_orders_are_shaped_like_the_published_schema() {
        let mut ids = IdSource::new(10);
        let orders = ordering_orders_from(&mut orders_rng(1), &mut ids, 500);
        let unique: HashSet<&str> = orders.iter().filter_map(|o| o["id"].as_str()).collect();
        assert_eq!(unique.len(), 500);
        for order in &orders {
            let status = order["status"].as_str().unwrap_or_default();
            assert!(
                ORDER_OPEN_STATUSES.contains(&status) || ORDER_CLOSED_STATUSES.contains(&status)
            );
            assert!(order.pointer("/keyDates/expectedAt").is_some());
            assert!(
                order["updatedAt"].as_str().unwrap_or_default()
                    >= order["createdAt"].as_str().unwrap_or("~")
            );
            assert!(order.pointer("/_links/self/href").is_some());
        }
    }

    #[test]
    fn due_dates_lie_ahead_of_the_clock() {
        let today = &rfc3339(today_secs())[..10];
        for order in tracking_orders(3, 50) {
            let due = order["keyDates"]["expectedAt"].as_str().unwrap_or_default();
            assert_eq!(due.len(), 10, "a plain date: {due}");
            assert!(due > today, "{due}");
        }
        let mut ids = IdSource::new(10);
        let now = rfc3339(now_secs());
        for order in ordering_orders_from(&mut orders_rng(1), &mut ids, 50) {
            let due = order["keyDates"]["expectedAt"].as_str().unwrap_or_default();
            assert!(due > now.as_str(), "{due}");
        }
    }

    #[test]
    fn big_counts_widen_tracking_ids() {
        let mut ids = IdSource::new(1_000_000);
        assert_eq!(ids.next_tracking(), "1000001");
    }
}
