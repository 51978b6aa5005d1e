//! The one comparison every case uses: a table of [`Step`]s sent to both planes in turn,
//! each answer reduced to an [`Answer`] with the values each side chose at random replaced
//! by names, and the two answers compared.
//!
//! A value a side chose (a cluster IP or node port the request did not name) is recorded
//! under a name such as `a.clusterIPs[0]` or `a.ports[0].nodePort` the first time a Service
//! answer carries it; answers print it by that name, and a later request can ask for it again
//! with the string `"{{a.ports[0].nodePort}}"` (each side sends its own value).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http::{Method, Request};
use kube::Client;
use kube::client::Body;
use serde_json::{Map, Value as Json, json};

use crate::planes::{Plane, Planes};

/// One request, sent to both planes.
pub struct Step {
    what: String,
    method: Method,
    target: Target,
    query: &'static str,
    content_type: &'static str,
    body: Option<Json>,
    repeat_until: Option<Until>,
    known: Option<Known>,
    released_later: bool,
}

/// What a repeated step waits for: a change that takes effect through an informer (a
/// policy, a quota, a ServiceCIDR).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Refused,
    Admitted,
}

/// Where a step's request goes.
enum Target {
    /// The Service of that name in the case's namespace.
    Service(String),
    /// The Services of a namespace: the case's, or the case's followed by `-<suffix>`.
    Services(Option<&'static str>),
    /// Any path; `{ns}` stands for the case's namespace.
    Path(String),
    /// No request: svcplane's webhook is stopped (`false`) or started again (`true`).
    Webhook(bool),
}

/// A documented difference: what svcplane answers where kube-apiserver alone answers
/// otherwise, named as README's table "Where svcplane answers differently from
/// kube-apiserver" names it.
pub struct Known {
    pub name: &'static str,
    /// svcplane's code and message (values replaced by their names, webhook prefix removed).
    pub svcplane: (u16, &'static str),
}

/// The answer as compared: a refusal's status, or on success the allocation fields.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    code: u16,
    /// A refusal's reason, details and message (the "admission webhook ... denied the
    /// request:" prefix, which kube-apiserver adds to any webhook's refusal, removed).
    status: Option<Json>,
    /// On success, the Service's allocation fields.
    object: Option<Json>,
}

fn service_json(name: &str, spec: Json) -> Json {
    let mut spec = spec;
    if spec.get("ports").is_none() && spec.get("type") != Some(&json!("ExternalName")) {
        spec["ports"] = json!([{ "port": 80 }]);
    }
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name }, "spec": spec })
}

impl Step {
    fn new(what: String, method: Method, target: Target) -> Self {
        Self {
            what,
            method,
            target,
            query: "",
            content_type: "application/json",
            body: None,
            repeat_until: None,
            known: None,
            released_later: false,
        }
    }

    fn with_body(mut self, content_type: &'static str, body: Json) -> Self {
        self.content_type = content_type;
        self.body = Some(body);
        self
    }

    /// `?dryRun=All`.
    pub fn dry_run(mut self) -> Self {
        self.query = "dryRun=All";
        self.what.push_str(" (dry run)");
        self
    }

    /// Sends the request again until it is refused (a policy or a quota that takes effect
    /// through an informer), then compares the refusals.
    pub fn until_refused(mut self) -> Self {
        self.repeat_until = Some(Until::Refused);
        self
    }

    /// Sends the request again until it is admitted (a ServiceCIDR that takes effect
    /// through an informer), then compares the answers.
    pub fn until_admitted(mut self) -> Self {
        self.repeat_until = Some(Until::Admitted);
        self
    }

    /// The answers differ, as documented.
    pub fn known(mut self, known: Known) -> Self {
        self.known = Some(known);
        self
    }

    /// After the documented refusal, svcplane is asked again until it admits the request
    /// (within the e2e wait limit), and the time that took is printed: the values it held
    /// were freed. Both planes then hold the same.
    pub fn released_later(mut self) -> Self {
        self.released_later = true;
        self
    }

    /// The namespace `<case>-<suffix>` instead of the case's own (for a step that must not
    /// meet the case's quota or policy).
    pub fn in_namespace(mut self, suffix: &'static str) -> Self {
        if let Target::Services(namespace) = &mut self.target {
            *namespace = Some(suffix);
        }
        self
    }
}

/// `POST` a Service `name` with `spec` (a port 80 added when it has no ports).
pub fn create(name: &str, spec: Json) -> Step {
    Step::new(
        format!("create {name} {spec}"),
        Method::POST,
        Target::Services(None),
    )
    .with_body("application/json", service_json(name, spec))
}

/// `PUT` Service `name` with `spec` as the whole spec (no resourceVersion: Services allow
/// unconditional updates).
pub fn put(name: &str, spec: Json) -> Step {
    Step::new(
        format!("put {name} {spec}"),
        Method::PUT,
        Target::Service(name.into()),
    )
    .with_body("application/json", service_json(name, spec))
}

/// `PUT` Service `name` with `spec` and a resourceVersion that is not the stored one: refused
/// with 409 Conflict by storage, after admission.
pub fn put_stale(name: &str, spec: Json) -> Step {
    let mut body = service_json(name, spec.clone());
    body["metadata"]["resourceVersion"] = json!("1");
    Step::new(
        format!("put {name} {spec} at resourceVersion 1"),
        Method::PUT,
        Target::Service(name.into()),
    )
    .with_body("application/json", body)
}

/// A JSON merge patch of Service `name`.
pub fn merge(name: &str, patch: Json) -> Step {
    Step::new(
        format!("merge-patch {name} {patch}"),
        Method::PATCH,
        Target::Service(name.into()),
    )
    .with_body("application/merge-patch+json", patch)
}

/// A JSON patch (RFC 6902) of Service `name`.
pub fn json_patch(name: &str, operations: Json) -> Step {
    Step::new(
        format!("json-patch {name} {operations}"),
        Method::PATCH,
        Target::Service(name.into()),
    )
    .with_body("application/json-patch+json", operations)
}

/// A strategic merge patch of Service `name`.
pub fn strategic(name: &str, patch: Json) -> Step {
    Step::new(
        format!("strategic-patch {name} {patch}"),
        Method::PATCH,
        Target::Service(name.into()),
    )
    .with_body("application/strategic-merge-patch+json", patch)
}

/// Server-side apply of Service `name` with `spec`, by field manager `e2e`, forced.
pub fn apply(name: &str, spec: Json) -> Step {
    let mut step = Step::new(
        format!("apply {name} {spec}"),
        Method::PATCH,
        Target::Service(name.into()),
    )
    .with_body("application/apply-patch+yaml", service_json(name, spec));
    step.query = "fieldManager=e2e&force=true";
    step
}

/// `DELETE` Service `name`.
pub fn delete(name: &str) -> Step {
    Step::new(
        format!("delete {name}"),
        Method::DELETE,
        Target::Service(name.into()),
    )
}

/// `DELETE` the whole collection of the case's Services.
pub fn delete_collection() -> Step {
    Step::new(
        "delete every Service".into(),
        Method::DELETE,
        Target::Services(None),
    )
}

/// Any request, e.g. a ResourceQuota; `{ns}` in `path` is the case's namespace.
pub fn raw(method: Method, path: &str, content_type: &'static str, body: Json) -> Step {
    Step::new(
        format!("{method} {path}"),
        method,
        Target::Path(path.into()),
    )
    .with_body(content_type, body)
}

/// Stops svcplane's webhook (on planes of the case's own: see [`Planes::set_webhook`]).
pub fn webhook_down() -> Step {
    Step::new(
        "svcplane's webhook stopped".into(),
        Method::GET,
        Target::Webhook(false),
    )
}

/// Starts svcplane's webhook again.
pub fn webhook_up() -> Step {
    Step::new(
        "svcplane's webhook started again".into(),
        Method::GET,
        Target::Webhook(true),
    )
}

/// Sends `steps` to both planes in the namespace `case` (created on both) and compares
/// every answer. Fails with every difference found, both answers printed.
pub async fn compare(planes: &Planes, case: &str, steps: Vec<Step>) -> Result<()> {
    let mut in_tree = Side::new(&planes.in_tree, case);
    let mut ours = Side::new(&planes.svcplane, case);
    for side in [&in_tree, &ours] {
        for namespace in [case.to_string(), format!("{case}-free")] {
            e2e::create_namespace(&side.client, &namespace).await?;
        }
    }
    let (mut same, mut known, mut differing) = (0, 0, Vec::new());
    let mut compared = 0;
    for (i, step) in steps.iter().enumerate() {
        if let Target::Webhook(up) = step.target {
            planes.set_webhook(up).await?;
            eprintln!("[{case} #{i}] {}", step.what);
            continue;
        }
        compared += 1;
        let theirs = in_tree.send(step).await?;
        let mine = ours.send(step).await?;
        let line = format!("{case} #{i} {}", step.what);
        match &step.known {
            None if theirs == mine => {
                same += 1;
                eprintln!("[{line}] same: {}", theirs.brief());
            }
            Some(expected) if mine.matches(expected) && theirs != mine => {
                known += 1;
                eprintln!(
                    "[{line}] documented difference {:?}: kube-apiserver {}, svcplane {}",
                    expected.name,
                    theirs.brief(),
                    mine.brief()
                );
                if step.released_later {
                    let started = Instant::now();
                    let admitted = ours.send_until_admitted(step).await?;
                    anyhow::ensure!(
                        admitted == theirs,
                        "{line}: admitted by svcplane after {:?}, but not as by kube-apiserver:\n  kube-apiserver: {theirs}\n  svcplane:       {admitted}",
                        started.elapsed()
                    );
                    eprintln!(
                        "[{line}] svcplane admitted it after {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            _ => {
                let mut report =
                    format!("{line}\n  kube-apiserver: {theirs}\n  svcplane:       {mine}");
                if let Some(expected) = &step.known {
                    let _ = write!(
                        report,
                        "\n  documented as {:?}: svcplane {} {:?}",
                        expected.name, expected.svcplane.0, expected.svcplane.1
                    );
                }
                eprintln!("[{report}]");
                differing.push(report);
            }
        }
    }
    planes.record(format!(
        "{case}: {compared} steps, {same} same, {known} documented, {} differing",
        differing.len()
    ));
    anyhow::ensure!(
        differing.is_empty(),
        "{} of {compared} answers differ:\n{}",
        differing.len(),
        differing.join("\n")
    );
    Ok(())
}

/// One plane as a table drives it: its namespace and the values it chose so far.
struct Side {
    label: &'static str,
    client: Client,
    namespace: String,
    /// (name, value) in the order they were first seen.
    chosen: Vec<(String, Json)>,
}

impl Side {
    fn new(plane: &Plane, case: &str) -> Self {
        Self {
            label: plane.label,
            client: plane.client.clone(),
            namespace: case.to_string(),
            chosen: Vec::new(),
        }
    }

    async fn send(&mut self, step: &Step) -> Result<Answer> {
        let deadline = Instant::now() + e2e::wait::wait_limit();
        loop {
            let answer = self.send_once(step).await?;
            let reached = match step.repeat_until {
                None => true,
                Some(Until::Refused) => answer.code >= 400,
                Some(Until::Admitted) => answer.code < 400,
            };
            if reached || Instant::now() >= deadline {
                return Ok(answer);
            }
            anyhow::ensure!(
                step.query.contains("dryRun"),
                "{}: a repeated step must be a dry run",
                step.what
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `step` until it is admitted, for at most the e2e wait limit.
    async fn send_until_admitted(&mut self, step: &Step) -> Result<Answer> {
        let deadline = Instant::now() + e2e::wait::wait_limit();
        loop {
            let answer = self.send_once(step).await?;
            if answer.code < 400 {
                return Ok(answer);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{}: {} still refused after {:?}: {answer}",
                self.label,
                step.what,
                e2e::wait::wait_limit()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn send_once(&mut self, step: &Step) -> Result<Answer> {
        let ns = &self.namespace;
        let mut path = match &step.target {
            Target::Service(name) => format!("/api/v1/namespaces/{ns}/services/{name}"),
            Target::Services(None) => format!("/api/v1/namespaces/{ns}/services"),
            Target::Services(Some(suffix)) => {
                format!("/api/v1/namespaces/{ns}-{suffix}/services")
            }
            Target::Path(path) => path.replace("{ns}", ns),
            Target::Webhook(_) => anyhow::bail!("{}: not a request", step.what),
        };
        if !step.query.is_empty() {
            path = format!("{path}?{}", step.query);
        }
        let body = match &step.body {
            Some(body) => serde_json::to_vec(&self.fill_in(body)?)?,
            None => Vec::new(),
        };
        let request = Request::builder()
            .method(step.method.clone())
            .uri(path)
            .header(http::header::CONTENT_TYPE, step.content_type)
            .header(http::header::ACCEPT, "application/json")
            .body(Body::from(body))?;
        let response = self
            .client
            .send(request)
            .await
            .with_context(|| format!("{}: {}", self.label, step.what))?;
        let code = response.status().as_u16();
        let bytes = response.into_body().collect_bytes().await?;
        let answer: Json = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({ "kind": "Status", "message": String::from_utf8_lossy(&bytes) }),
        );
        if code >= 400 || answer["kind"] == "Status" {
            return Ok(Answer {
                code,
                status: Some(self.status(&answer)),
                object: None,
            });
        }
        // A dry run's values are held by nothing: each side may offer them again, or not,
        // so they are shown as `<chosen>`, never named.
        let dry_run = step.query.contains("dryRun");
        if answer["kind"] == "Service" && !dry_run {
            self.record_chosen(&answer);
        }
        Ok(Answer {
            code,
            status: None,
            object: (answer["kind"] == "Service").then(|| self.allocation_fields(&answer, dry_run)),
        })
    }

    /// Replaces `"{{name}}"` strings by this side's latest value of that name.
    fn fill_in(&self, body: &Json) -> Result<Json> {
        Ok(match body {
            Json::String(s) if s.starts_with("{{") && s.ends_with("}}") => {
                let name = &s[2..s.len() - 2];
                self.chosen
                    .iter()
                    .rev()
                    .find(|(chosen, _)| chosen.split('#').next() == Some(name))
                    .map(|(_, value)| value.clone())
                    .with_context(|| format!("{}: no value named {name} yet", self.label))?
            }
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|item| self.fill_in(item))
                    .collect::<Result<_>>()?,
            ),
            Json::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), self.fill_in(value)?)))
                    .collect::<Result<Map<_, _>>>()?,
            ),
            other => other.clone(),
        })
    }

    fn record_chosen(&mut self, service: &Json) {
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &service["spec"];
        let mut seen = Vec::new();
        for (i, ip) in spec["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if ip != "None" {
                seen.push((format!("{name}.clusterIPs[{i}]"), ip.clone()));
            }
        }
        for (i, port) in spec["ports"].as_array().into_iter().flatten().enumerate() {
            if port["nodePort"].is_number() {
                seen.push((
                    format!("{name}.ports[{i}].nodePort"),
                    port["nodePort"].clone(),
                ));
            }
        }
        if spec["healthCheckNodePort"].is_number() {
            seen.push((
                format!("{name}.healthCheckNodePort"),
                spec["healthCheckNodePort"].clone(),
            ));
        }
        // A value asked for again under another name gets that name too; answers keep
        // printing it by its first.
        for (key, value) in seen {
            let same_name = |chosen: &String| chosen.split('#').next() == Some(key.as_str());
            if self
                .chosen
                .iter()
                .any(|(chosen, known)| same_name(chosen) && known == &value)
            {
                continue;
            }
            let taken = self
                .chosen
                .iter()
                .filter(|(chosen, _)| same_name(chosen))
                .count();
            let key = if taken == 0 {
                key
            } else {
                format!("{key}#{}", taken + 1)
            };
            self.chosen.push((key, value));
        }
    }

    /// The fields allocation decides, chosen values replaced by their names.
    fn allocation_fields(&self, service: &Json, dry_run: bool) -> Json {
        let spec = &service["spec"];
        let mut fields = Map::new();
        for key in [
            "type",
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "externalTrafficPolicy",
            "externalName",
        ] {
            if !spec[key].is_null() {
                let value = match key {
                    "clusterIP" | "clusterIPs" | "healthCheckNodePort" => {
                        self.named(&spec[key], dry_run)
                    }
                    _ => spec[key].clone(),
                };
                fields.insert(key.into(), value);
            }
        }
        let ports: Vec<Json> = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|port| {
                json!([
                    port["port"],
                    port["protocol"],
                    self.named(&port["nodePort"], dry_run)
                ])
            })
            .collect();
        fields.insert("ports".into(), json!(ports));
        Json::Object(fields)
    }

    /// `value` (an address, a port or a list of them) with chosen values by their names; in
    /// a dry run's answer, a value not chosen before is `<chosen>`.
    fn named(&self, value: &Json, dry_run: bool) -> Json {
        match value {
            Json::Array(items) => {
                Json::Array(items.iter().map(|v| self.named(v, dry_run)).collect())
            }
            Json::Null => Json::Null,
            Json::String(none) if none == "None" => value.clone(),
            other => match self.chosen.iter().find(|(_, known)| known == other) {
                Some((name, _)) => json!(format!("<{name}>")),
                None if dry_run => json!("<chosen>"),
                None => other.clone(),
            },
        }
    }

    /// A refusal as compared: code, reason, details (kind, group, name, each cause's field
    /// and type) and message, chosen values replaced by their names.
    fn status(&self, status: &Json) -> Json {
        let message = status["message"].as_str().unwrap_or_default();
        let message = without_webhook_prefix(message);
        let details = &status["details"];
        let causes: Vec<Json> = details["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|cause| json!([cause["field"], cause["reason"]]))
            .collect();
        json!({
            "reason": status["reason"],
            "details": {
                "kind": details["kind"],
                "group": details["group"],
                "name": details["name"],
                "causes": causes,
            },
            "message": self.named_in_text(message),
        })
    }

    /// `text` with every chosen value replaced by `<name>`, longest values first, only where
    /// the value stands alone (not inside a longer address or number).
    fn named_in_text(&self, text: &str) -> String {
        let mut values: Vec<(String, &str)> = self
            .chosen
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (text, name.as_str())
            })
            .collect();
        values.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        let mut out = text.to_string();
        for (value, name) in values {
            out = replace_standalone(&out, &value, &format!("<{name}>"));
        }
        out
    }
}

/// kube-apiserver prefixes a webhook's refusal with `admission webhook "<name>" denied the
/// request: ` (`ToStatusErr` in apiserver's `admission/plugin/webhook/errors`).
fn without_webhook_prefix(message: &str) -> &str {
    const START: &str = "admission webhook \"";
    const END: &str = "\" denied the request: ";
    match message
        .strip_prefix(START)
        .and_then(|rest| rest.split_once(END))
    {
        Some((_, rest)) => rest,
        None => message,
    }
}

fn replace_standalone(text: &str, value: &str, name: &str) -> String {
    let part_of_value = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(value) {
        out.push_str(&rest[..at]);
        let before = out.chars().last();
        let tail = &rest[at + value.len()..];
        let mut following = tail.chars();
        // A '.' or ':' followed by no digit ends a sentence or a clause, not an address.
        let after_ok = match following.next() {
            Some('.' | ':') => !following.next().is_some_and(|c| c.is_ascii_hexdigit()),
            Some(c) => !part_of_value(c),
            None => true,
        };
        if !before.is_some_and(part_of_value) && after_ok {
            out.push_str(name);
        } else {
            out.push_str(value);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

impl Answer {
    fn matches(&self, known: &Known) -> bool {
        self.code == known.svcplane.0
            && self
                .status
                .as_ref()
                .is_some_and(|status| status["message"] == known.svcplane.1)
    }

    fn brief(&self) -> String {
        match &self.status {
            Some(status) => format!("{} {}", self.code, status["message"]),
            None => format!("{}", self.code),
        }
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.status.as_ref().or(self.object.as_ref());
        write!(f, "{} {}", self.code, body.cloned().unwrap_or(Json::Null))
    }
}
