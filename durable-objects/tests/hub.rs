//! The hub protocol over the in-memory state.

mod common;

use std::time::Instant;

use common::{call, request};
use edgegate_durable_objects::hub::Hub;
use edgegate_durable_objects::testing::{MemorySocket, MemoryState, block_on};
use edgegate_durable_objects::{DurableObject, Message, WebSocket};
use http::StatusCode;
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

struct Harness {
    state: MemoryState,
    hub: Hub<MemorySocket>,
}

impl Harness {
    fn new() -> Self {
        Self {
            state: MemoryState::new(T0),
            hub: Hub::new(),
        }
    }

    /// The hub is evicted and re-created over the same platform state.
    fn evict(&mut self) {
        self.hub = Hub::new();
    }

    fn upgrade(
        &self,
        headers: &[(&str, &str)],
    ) -> Result<MemorySocket, Box<http::Response<Vec<u8>>>> {
        let mut builder = http::Request::builder()
            .uri("https://hub.internal/ws")
            .header("upgrade", "websocket");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let outcome = block_on(
            self.hub
                .fetch(&self.state, builder.body(Vec::new()).unwrap()),
        );
        self.state.accept_outcome(outcome)
    }

    fn connect(&self, user: &str) -> MemorySocket {
        self.upgrade(&[("x-user-id", user)]).expect("accepted")
    }

    fn send(&self, socket: &MemorySocket, text: &str) {
        block_on(
            self.hub
                .websocket_message(&self.state, socket, Message::Text(text.into())),
        );
    }

    fn send_json(&self, socket: &MemorySocket, value: Value) {
        self.send(socket, &value.to_string());
    }

    fn disconnect(&self, socket: &MemorySocket) {
        socket.client_close(1000, "bye");
        block_on(self.hub.websocket_close(&self.state, socket, 1000, "bye"));
    }

    /// Subscribes and checks the ack (dropping frames received before).
    fn subscribe(&self, socket: &MemorySocket, topic: &str) {
        socket.take_sent();
        self.send_json(
            socket,
            json!({"type": "subscribe", "topic": topic, "id": "s"}),
        );
        assert_eq!(socket.take_json(), [json!({"type": "ack", "id": "s"})]);
    }

    fn get(&self, path: &str) -> (StatusCode, Value) {
        call(&self.hub, &self.state, request("GET", path, ""))
    }

    fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        call(&self.hub, &self.state, request("POST", path, body))
    }
}

fn error_code(frames: &[Value]) -> Vec<(String, Value)> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "error", "{f}");
            (f["code"].as_str().unwrap().to_string(), f["id"].clone())
        })
        .collect()
}

#[test]
fn upgrade_needs_a_user() {
    let h = Harness::new();
    let response = h.upgrade(&[]).unwrap_err();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"], "missing x-user-id");
    let response = h
        .upgrade(&[("x-user-id", "a"), ("x-hub-messages-per-second", "0")])
        .unwrap_err();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let long = "u".repeat(252);
    assert_eq!(
        h.upgrade(&[("x-user-id", &long)]).unwrap_err().status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn accepts_with_user_and_connection_tags_and_registers_ping_auto_response() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let again = h.connect("alice");
    let (tags, other) = (alice.tags(), again.tags());
    assert_eq!(tags[0], "user:alice");
    assert_eq!(other[0], "user:alice");
    // Each connection also has a tag of its own.
    assert!(tags[1].starts_with("cid:"), "{tags:?}");
    assert!(other[1].starts_with("cid:"), "{other:?}");
    assert_ne!(tags[1], other[1]);
    assert_eq!(tags.len(), 2);
    assert!(alice.attachment().is_some());
    assert_eq!(
        h.state.auto_response(),
        Some((r#"{"type":"ping"}"#.into(), r#"{"type":"pong"}"#.into()))
    );
    h.send(&alice, r#"{"type":"ping"}"#);
    assert_eq!(alice.take_sent(), [r#"{"type":"pong"}"#]);
}

#[test]
fn subscribe_publish_reaches_subscribers_only() {
    let h = Harness::new();
    let (alice, bob, carol) = (h.connect("alice"), h.connect("bob"), h.connect("carol"));
    for s in [&alice, &bob, &carol] {
        s.take_sent();
    }
    h.send(&alice, r#"{"type":"subscribe","topic":"t","id":"1"}"#);
    assert_eq!(alice.take_sent(), [r#"{"type":"ack","id":"1"}"#]);
    h.subscribe(&bob, "t");
    h.subscribe(&carol, "other");

    // Carol is not subscribed to "t": she does not get her own publish.
    h.send(
        &carol,
        r#"{"type":"publish","topic":"t","data":{"x":[1,"y"]},"id":"3"}"#,
    );
    let expected = r#"{"type":"message","topic":"t","data":{"x":[1,"y"]},"from":"carol"}"#;
    assert_eq!(alice.take_sent(), [expected]);
    assert_eq!(bob.take_sent(), [expected]);
    assert_eq!(carol.take_sent(), [r#"{"type":"ack","id":"3"}"#]);

    // Alice is subscribed: she gets her own message, then the ack.
    h.send_json(
        &alice,
        json!({"type": "publish", "topic": "t", "data": null, "id": "4"}),
    );
    assert_eq!(
        alice.take_json(),
        [
            json!({"type": "message", "topic": "t", "data": null, "from": "alice"}),
            json!({"type": "ack", "id": "4"})
        ]
    );
    assert_eq!(bob.take_sent().len(), 1);
    assert!(carol.take_sent().is_empty());

    // Unsubscribed: no more messages.
    h.send(&bob, r#"{"type":"unsubscribe","topic":"t","id":"2"}"#);
    assert_eq!(bob.take_sent(), [r#"{"type":"ack","id":"2"}"#]);
    h.send_json(&alice, json!({"type": "publish", "topic": "t", "data": 1}));
    assert!(bob.take_sent().is_empty());
    assert_eq!(alice.take_sent().len(), 1, "no ack without an id");
}

#[test]
fn presence_and_join_leave_on_first_and_last_socket() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let bob1 = h.connect("bob");
    assert_eq!(alice.take_sent(), [r#"{"type":"join","user":"bob"}"#]);
    assert!(
        bob1.take_sent().is_empty(),
        "the joining socket is not told"
    );
    let bob2 = h.connect("bob");
    assert!(alice.take_sent().is_empty(), "second socket: no join");
    assert!(bob1.take_sent().is_empty());

    h.send(&alice, r#"{"type":"presence","id":"4"}"#);
    assert_eq!(
        alice.take_sent(),
        [r#"{"type":"presence","id":"4","users":["alice","bob"]}"#]
    );

    h.disconnect(&bob1);
    assert!(alice.take_sent().is_empty(), "bob is still connected");
    h.disconnect(&bob2);
    assert_eq!(alice.take_sent(), [r#"{"type":"leave","user":"bob"}"#]);
    assert_eq!(
        h.get("/presence"),
        (StatusCode::OK, json!({"users": ["alice"]}))
    );
    // A repeated close event changes nothing.
    h.disconnect(&bob2);
    assert!(alice.take_sent().is_empty());
}

#[test]
fn bad_messages() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let cases = [
        (r#"not json"#, Value::Null),
        (r#"[1,2]"#, Value::Null),
        (r#"{"type":"dance","id":"1"}"#, json!("1")),
        (r#"{"id":"2"}"#, json!("2")),
        (r#"{"type":"subscribe","id":"3"}"#, json!("3")),
        (
            r#"{"type":"subscribe","topic":"has space","id":"4"}"#,
            json!("4"),
        ),
        (r#"{"type":"subscribe","topic":"","id":"5"}"#, json!("5")),
        (r#"{"type":"publish","topic":"t","id":"6"}"#, json!("6")),
        (r#"{"type":"unsubscribe","topic":7,"id":"7"}"#, json!("7")),
        (r#"{"type":"presence","id":{"x":1}}"#, Value::Null),
    ];
    for (text, id) in &cases {
        h.send(&alice, text);
        let frames = alice.take_json();
        assert_eq!(
            error_code(&frames),
            [("BAD_MESSAGE".to_string(), id.clone())],
            "{text}"
        );
        assert!(frames[0]["message"].is_string());
    }
    let long_topic = "a".repeat(129);
    h.send_json(
        &alice,
        json!({"type": "subscribe", "topic": long_topic, "id": 8}),
    );
    assert_eq!(
        error_code(&alice.take_json()),
        [("BAD_MESSAGE".into(), json!(8))]
    );
    // Extra fields are ignored; topics may use the whole alphabet.
    h.send_json(
        &alice,
        json!({"type": "subscribe", "topic": "Room-1/a_b.c:d", "id": "9", "extra": true}),
    );
    assert_eq!(alice.take_json(), [json!({"type": "ack", "id": "9"})]);
    assert!(alice.is_open());
}

#[test]
fn rate_limited_then_closed_when_flooding() {
    let h = Harness::new();
    let alice = h
        .upgrade(&[("x-user-id", "alice"), ("x-hub-messages-per-second", "5")])
        .unwrap();
    let bob = h.connect("bob");
    alice.take_sent();
    // Burst of 10 (twice the rate).
    for _ in 0..10 {
        h.send(&alice, r#"{"type":"ping"}"#);
    }
    assert_eq!(alice.take_sent().len(), 10);
    h.send(&alice, r#"{"type":"presence","id":"p"}"#);
    assert_eq!(
        error_code(&alice.take_json()),
        [("RATE_LIMITED".into(), json!("p"))]
    );
    // 5 per second: one more every 200 ms.
    h.state.advance(200);
    h.send(&alice, r#"{"type":"ping"}"#);
    assert_eq!(alice.take_json(), [json!({"type": "pong"})]);

    // Keep flooding: closed with 1008 after three bursts' worth of refusals.
    let mut refused = 0;
    while alice.is_open() {
        h.send(&alice, r#"{"type":"ping"}"#);
        refused += 1;
        assert!(refused <= 40, "should have been closed");
    }
    assert_eq!(alice.closed(), Some((1008, "rate limit exceeded".into())));
    assert_eq!(refused, 30);
    assert_eq!(
        bob.take_json().last(),
        Some(&json!({"type": "leave", "user": "alice"}))
    );
}

#[test]
fn rate_limit_survives_eviction() {
    let mut h = Harness::new();
    let alice = h.connect("alice");
    for _ in 0..40 {
        h.send(&alice, r#"{"type":"ping"}"#);
    }
    alice.take_sent();
    h.evict();
    h.send(&alice, r#"{"type":"ping"}"#);
    assert_eq!(
        error_code(&alice.take_json()),
        [("RATE_LIMITED".into(), Value::Null)]
    );
}

#[test]
fn too_large_closes_with_1009() {
    let h = Harness::new();
    let alice = h
        .upgrade(&[("x-user-id", "alice"), ("x-hub-max-message-bytes", "64")])
        .unwrap();
    let bob = h.connect("bob");
    alice.take_sent();
    let fits = format!(
        r#"{{"type":"publish","topic":"t","data":"{}"}}"#,
        "x".repeat(24)
    );
    assert_eq!(fits.len(), 64);
    h.send(&alice, &fits);
    assert!(alice.is_open());
    let over = format!(
        r#"{{"type":"publish","topic":"t","data":"{}"}}"#,
        "x".repeat(25)
    );
    h.send(&alice, &over);
    assert_eq!(
        error_code(&alice.take_json()),
        [("TOO_LARGE".into(), Value::Null)]
    );
    assert_eq!(alice.closed(), Some((1009, "message too large".into())));
    assert_eq!(bob.take_json(), [json!({"type": "leave", "user": "alice"})]);
    // Frames still in flight for the closed socket are ignored.
    block_on(
        h.hub
            .websocket_message(&h.state, &alice, Message::Text("{}".into())),
    );
    assert_eq!(h.get("/presence").1, json!({"users": ["bob"]}));
}

#[test]
fn binary_frames_close_with_1003() {
    let h = Harness::new();
    let alice = h.connect("alice");
    block_on(
        h.hub
            .websocket_message(&h.state, &alice, Message::Binary(vec![1, 2])),
    );
    assert_eq!(alice.closed().map(|c| c.0), Some(1003));
    // The close event that follows does not announce a second leave.
    block_on(h.hub.websocket_close(&h.state, &alice, 1003, ""));
    assert_eq!(h.get("/presence").1, json!({"users": []}));
}

#[test]
fn system_topics_need_admin() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let root = h
        .upgrade(&[("x-user-id", "root"), ("x-user-roles", "ops, admin")])
        .unwrap();
    alice.take_sent();
    h.subscribe(&alice, "system/alerts");
    h.send(
        &alice,
        r#"{"type":"publish","topic":"system/alerts","data":1,"id":"3"}"#,
    );
    let frames = alice.take_json();
    assert_eq!(error_code(&frames), [("FORBIDDEN".into(), json!("3"))]);
    h.send(
        &root,
        r#"{"type":"publish","topic":"system/alerts","data":2,"id":"4"}"#,
    );
    assert_eq!(
        alice.take_json(),
        [json!({"type": "message", "topic": "system/alerts", "data": 2, "from": "root"})]
    );
    assert_eq!(root.take_json(), [json!({"type": "ack", "id": "4"})]);
}

#[test]
fn subscriptions_survive_hibernation() {
    let mut h = Harness::new();
    let alice = h.connect("alice");
    let bob = h.connect("bob");
    h.subscribe(&alice, "t");
    h.subscribe(&alice, "u");
    h.subscribe(&bob, "u");
    alice.take_sent();

    h.evict();
    h.state.advance(60_000);
    h.send(&bob, r#"{"type":"publish","topic":"t","data":"hi"}"#);
    assert_eq!(
        alice.take_json(),
        [json!({"type": "message", "topic": "t", "data": "hi", "from": "bob"})]
    );
    assert!(bob.take_sent().is_empty());
    assert_eq!(h.get("/presence").1, json!({"users": ["alice", "bob"]}));

    // Changes after the rebuild are kept too.
    h.send(&alice, r#"{"type":"unsubscribe","topic":"t","id":"x"}"#);
    h.evict();
    let (_, delivered) = h.post("/publish", r#"{"topic":"t","data":1}"#);
    assert_eq!(delivered, json!({"delivered": 0}));
    let (_, delivered) = h.post("/publish", r#"{"topic":"u","data":1}"#);
    assert_eq!(delivered, json!({"delivered": 2}));

    // Joins and leaves are still counted per user after a rebuild.
    h.evict();
    bob.take_sent();
    let bob2 = h.connect("bob");
    assert!(alice.take_sent().iter().all(|f| !f.contains("join")));
    h.disconnect(&bob);
    h.evict();
    h.disconnect(&bob2);
    assert_eq!(
        alice.take_json().last(),
        Some(&json!({"type": "leave", "user": "bob"}))
    );
}

#[test]
fn backend_publish_and_presence() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let bob = h.connect("bob");
    h.subscribe(&alice, "news");
    h.subscribe(&bob, "news");
    alice.take_sent();
    let (status, body) = h.post(
        "/publish",
        r#"{"topic":"news","data":{"headline":"x"},"from":"billing"}"#,
    );
    assert_eq!((status, body), (StatusCode::OK, json!({"delivered": 2})));
    let expected =
        json!({"type": "message", "topic": "news", "data": {"headline": "x"}, "from": "billing"});
    assert_eq!(alice.take_json(), std::slice::from_ref(&expected));
    assert_eq!(bob.take_json(), [expected]);
    let (_, body) = h.post("/publish", r#"{"topic":"system/x","data":[]}"#);
    assert_eq!(body, json!({"delivered": 0}));

    assert_eq!(
        h.get("/presence"),
        (StatusCode::OK, json!({"users": ["alice", "bob"]}))
    );
    assert_eq!(h.post("/publish", "{").0, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.post("/publish", r#"{"topic":"t"}"#).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.post("/publish", r#"{"topic":"a b","data":1}"#).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(h.get("/publish").0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.post("/presence", "").0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.get("/nope").0, StatusCode::NOT_FOUND);
}

#[test]
fn subscription_set_is_bounded_by_the_attachment() {
    let h = Harness::new();
    let alice = h.connect("alice");
    let mut accepted = 0;
    loop {
        let topic = format!("{}-{accepted:03}", "t".repeat(100));
        h.send_json(
            &alice,
            json!({"type": "subscribe", "topic": topic, "id": accepted}),
        );
        h.state.advance(1_000);
        let frames = alice.take_json();
        if frames[0]["type"] == "error" {
            assert_eq!(error_code(&frames), [("TOO_LARGE".into(), json!(accepted))]);
            break;
        }
        accepted += 1;
    }
    assert!(accepted >= 15, "{accepted}");
    assert!(alice.attachment().unwrap().len() <= 2048);
    assert!(alice.is_open());
}

#[test]
fn an_accept_the_platform_never_completed_is_forgotten() {
    let h = Harness::new();
    let alice = h.connect("alice");
    // The upgrade is answered but the adapter never accepts the socket.
    let outcome = block_on(
        h.hub.fetch(
            &h.state,
            http::Request::builder()
                .header("upgrade", "websocket")
                .header("x-user-id", "ghost")
                .body(Vec::new())
                .unwrap(),
        ),
    );
    assert!(h.state.accept_outcome(outcome).is_ok_and(|s| {
        s.client_close(1006, "");
        true
    }));
    assert_eq!(
        alice.take_json(),
        [json!({"type": "join", "user": "ghost"})]
    );
    assert_eq!(h.get("/presence").1, json!({"users": ["alice", "ghost"]}));
    h.state.advance(10_001);
    assert_eq!(h.get("/presence").1, json!({"users": ["alice"]}));
    assert_eq!(
        alice.take_json(),
        [json!({"type": "leave", "user": "ghost"})]
    );
}

#[test]
fn broadcast_to_ten_thousand_subscribers() {
    let h = Harness::new();
    // 100 users with 100 sockets each: 10,000 joins would cost 10,000²
    // frames in setup alone.
    let sockets: Vec<_> = (0..10_000)
        .map(|i| h.connect(&format!("u{}", i % 100)))
        .collect();
    for s in &sockets {
        h.send(s, r#"{"type":"subscribe","topic":"all"}"#);
    }
    let started = Instant::now();
    let (_, body) = h.post("/publish", r#"{"topic":"all","data":{"n":1}}"#);
    let elapsed = started.elapsed();
    assert_eq!(body, json!({"delivered": 10_000}));
    assert_eq!(
        sockets[9_999].sent().last().map(String::as_str),
        Some(r#"{"type":"message","topic":"all","data":{"n":1},"from":"system"}"#)
    );
    // Generous for unoptimized builds; `cargo bench` measures it properly.
    assert!(elapsed.as_millis() < 250, "{elapsed:?}");
}

#[test]
fn close_after_eviction_while_the_platform_still_lists_the_socket() {
    let mut h = Harness::new();
    let alice = h.connect("alice");
    let bob = h.connect("bob");
    h.subscribe(&bob, "t");
    alice.take_sent();
    h.evict();
    // The close event arrives before the platform drops the socket.
    block_on(h.hub.websocket_close(&h.state, &bob, 1001, "going away"));
    assert_eq!(alice.take_json(), [json!({"type": "leave", "user": "bob"})]);
    let (_, delivered) = h.post("/publish", r#"{"topic":"t","data":1}"#);
    assert_eq!(delivered, json!({"delivered": 0}));
    // A second event for the same socket announces nothing.
    h.evict();
    block_on(h.hub.websocket_close(&h.state, &bob, 1001, "going away"));
    assert!(alice.take_sent().is_empty());
}

/// Carries everything `from` published to its peers to `to`, as the host
/// link does; returns how many messages went.
fn relay(from: &Harness, origin: &str, to: &Harness) -> usize {
    let messages = from.state.take_published();
    for message in &messages {
        block_on(to.hub.peer_message(&to.state, origin, message));
    }
    messages.len()
}

/// Two hosts of one hub: relays until neither has anything to say.
fn settle(a: &Harness, b: &Harness) {
    for _ in 0..10 {
        if relay(a, "host-a", b) + relay(b, "host-b", a) == 0 {
            return;
        }
    }
    panic!("the hosts kept talking");
}

fn linked_pair() -> (Harness, Harness) {
    let (a, b) = (Harness::new(), Harness::new());
    a.state.enable_peers();
    b.state.enable_peers();
    (a, b)
}

#[test]
fn hosts_share_publishes_and_presence() {
    let (a, b) = linked_pair();
    let alice = a.connect("alice");
    settle(&a, &b);
    let bob = b.connect("bob");
    settle(&a, &b);
    // Bob's first connection anywhere: Alice on the other host hears it.
    assert_eq!(alice.take_json(), [json!({"type": "join", "user": "bob"})]);
    b.send_json(&bob, json!({"type": "presence", "id": "p"}));
    assert_eq!(
        bob.take_json(),
        [json!({"type": "presence", "id": "p", "users": ["alice", "bob"]})]
    );
    assert_eq!(
        a.get("/presence"),
        (StatusCode::OK, json!({"users": ["alice", "bob"]}))
    );

    // A publish reaches the subscribers of both hosts.
    a.subscribe(&alice, "chat");
    b.subscribe(&bob, "chat");
    b.send_json(
        &bob,
        json!({"type": "publish", "topic": "chat", "data": {"n": 1}, "id": "m"}),
    );
    settle(&a, &b);
    let message = json!({"type": "message", "topic": "chat", "data": {"n": 1}, "from": "bob"});
    assert_eq!(
        bob.take_json(),
        [message.clone(), json!({"type": "ack", "id": "m"})]
    );
    assert_eq!(alice.take_json(), [message]);
    let (_, delivered) = a.post("/publish", r#"{"topic":"chat","data":2}"#);
    assert_eq!(
        delivered,
        json!({"delivered": 1}),
        "counts this host's sockets"
    );
    settle(&a, &b);
    assert_eq!(bob.take_json().len(), 1);
    assert_eq!(alice.take_json().len(), 1);

    // Bob also connects to host A: no second join; leaving A while still on
    // B: no leave; leaving B as well: leave.
    let bob_on_a = a.connect("bob");
    settle(&a, &b);
    assert!(alice.take_sent().is_empty());
    a.disconnect(&bob_on_a);
    settle(&a, &b);
    assert!(alice.take_sent().is_empty());
    b.disconnect(&bob);
    settle(&a, &b);
    assert_eq!(alice.take_json(), [json!({"type": "leave", "user": "bob"})]);
    assert_eq!(
        a.get("/presence"),
        (StatusCode::OK, json!({"users": ["alice"]}))
    );
}

#[test]
fn a_silent_host_is_forgotten_and_a_new_instance_asks() {
    let (a, mut b) = linked_pair();
    let alice = a.connect("alice");
    let bob = b.connect("bob");
    settle(&a, &b);
    alice.take_sent();
    // The heartbeat alarm is scheduled while there are users.
    assert!(a.state.alarm().is_some());

    // Host B's hub is re-created: it asks, and host A's roster comes back.
    b.evict();
    b.send_json(&bob, json!({"type": "presence", "id": "p"}));
    bob.take_sent();
    settle(&a, &b);
    b.send_json(&bob, json!({"type": "presence", "id": "q"}));
    // What the new instance learnt is not news to Bob: no second join.
    assert_eq!(
        bob.take_json(),
        [json!({"type": "presence", "id": "q", "users": ["alice", "bob"]})]
    );

    // Host B goes silent (crashed): A's heartbeats carry on, and after the
    // peer lifetime Bob is gone from A's view.
    b.state.take_published();
    for _ in 0..4 {
        a.state
            .advance(edgegate_durable_objects::hub::peers::ANNOUNCE_MS);
        assert!(a.state.fire_alarm(&a.hub).unwrap());
        assert_eq!(
            a.state.take_published().len(),
            1,
            "one roster per heartbeat"
        );
    }
    assert_eq!(alice.take_json(), [json!({"type": "leave", "user": "bob"})]);
}

#[test]
fn without_peers_nothing_is_published_and_no_alarm_is_set() {
    let h = Harness::new();
    let alice = h.connect("alice");
    h.subscribe(&alice, "t");
    h.send_json(&alice, json!({"type": "publish", "topic": "t", "data": 1}));
    assert!(h.state.take_published().is_empty());
    assert_eq!(h.state.alarm(), None);
}

/// Random sessions against a model of the protocol: which socket is
/// subscribed to which topic decides, after any sequence of subscribes,
/// unsubscribes, malformed frames and evictions, exactly who receives each
/// publish.
mod model {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::Harness;

    const USERS: [&str; 3] = ["ann", "ben", "cat"];
    const TOPICS: [&str; 3] = ["a", "b/c", "room:1"];

    #[derive(Debug, Clone)]
    enum Step {
        Subscribe(usize, usize),
        Unsubscribe(usize, usize),
        Publish(usize, usize, i64),
        /// A frame that is not a protocol message.
        Garbage(usize, String),
        /// The hub is rebuilt from the platform's state (hibernation).
        Evict,
    }

    fn step() -> impl Strategy<Value = Step> {
        let socket = 0..USERS.len();
        let topic = 0..TOPICS.len();
        prop_oneof![
            3 => (socket.clone(), topic.clone()).prop_map(|(s, t)| Step::Subscribe(s, t)),
            2 => (socket.clone(), topic.clone()).prop_map(|(s, t)| Step::Unsubscribe(s, t)),
            4 => (socket.clone(), topic, any::<i64>()).prop_map(|(s, t, n)| Step::Publish(s, t, n)),
            1 => (socket, garbage()).prop_map(|(s, g)| Step::Garbage(s, g)),
            1 => Just(Step::Evict),
        ]
    }

    /// Text a client may send that the hub must refuse: any string that is
    /// not an object, and objects with the protocol's fields gone wrong.
    fn garbage() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[ -~]{0,12}".prop_map(Value::from),
            Just(json!(["subscribe"])),
            Just(json!({"topic": "a"})),
        ];
        prop_oneof![
            "\\PC{0,40}".prop_filter("not an object", |s| !s.trim_start().starts_with('{')),
            (field.clone(), field.clone())
                .prop_map(|(kind, topic)| json!({"type": kind, "topic": topic}).to_string()),
            field.prop_map(|topic| json!({"type": "publish", "topic": topic}).to_string()),
            Just(r#"{"type":"subscribe","topic":"a""#.to_string()),
            Just(format!(
                r#"{{"type":"subscribe","topic":"{}"}}"#,
                "x".repeat(129)
            )),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn publishes_reach_exactly_the_current_subscribers(
            steps in prop::collection::vec(step(), 1..40),
        ) {
            let mut h = Harness::new();
            let sockets: Vec<_> = USERS.iter().map(|u| h.connect(u)).collect();
            for s in &sockets {
                s.take_sent();
            }
            let mut subscribed = BTreeSet::new();
            for (n, step) in steps.iter().enumerate() {
                // A second between frames: the flood limit never applies.
                h.state.advance(1_000);
                let id = format!("m{n}");
                match step {
                    Step::Subscribe(s, t) | Step::Unsubscribe(s, t) => {
                        let kind = if matches!(step, Step::Subscribe(..)) {
                            subscribed.insert((*s, *t));
                            "subscribe"
                        } else {
                            subscribed.remove(&(*s, *t));
                            "unsubscribe"
                        };
                        h.send_json(&sockets[*s], json!({"type": kind, "topic": TOPICS[*t], "id": id}));
                        prop_assert_eq!(sockets[*s].take_json(), [json!({"type": "ack", "id": id})]);
                    }
                    Step::Publish(s, t, data) => {
                        h.send_json(
                            &sockets[*s],
                            json!({"type": "publish", "topic": TOPICS[*t], "data": data, "id": id}),
                        );
                        let message = json!({
                            "type": "message", "topic": TOPICS[*t], "data": data, "from": USERS[*s],
                        });
                        for (r, socket) in sockets.iter().enumerate() {
                            let mut expected = Vec::new();
                            if subscribed.contains(&(r, *t)) {
                                expected.push(message.clone());
                            }
                            if r == *s {
                                expected.push(json!({"type": "ack", "id": id}));
                            }
                            prop_assert_eq!(socket.take_json(), expected, "socket {} after {:?}", r, step);
                        }
                    }
                    Step::Garbage(s, text) => {
                        h.send(&sockets[*s], text);
                        let frames = sockets[*s].take_json();
                        prop_assert_eq!(frames.len(), 1, "{}", text);
                        prop_assert_eq!(&frames[0]["type"], "error", "{}", text);
                        prop_assert!(frames[0]["message"].is_string());
                    }
                    Step::Evict => h.evict(),
                }
                for socket in &sockets {
                    prop_assert!(socket.is_open(), "closed after {:?}", step);
                }
            }
        }
    }
}
