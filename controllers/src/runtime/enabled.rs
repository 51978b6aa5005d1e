//! Which controllers run, chosen as kube-controller-manager chooses its own: a `--controllers`
//! list where `*` turns on every controller that is on by default, `foo` turns on `foo` and
//! `-foo` turns it off, with kube-controller-manager's names and aliases.
//!
//! The rules follow kube-controller-manager v1.37.2: the names are those of
//! `cmd/kube-controller-manager/names/controller_names.go` and the aliases of the controller
//! descriptors in `cmd/kube-controller-manager/app/`; an alias stands for its canonical name
//! (`ApplyTo` in `k8s.io/controller-manager/options/generic.go`); a name that is not a known
//! controller is refused (`Validate`, same file); the first entry naming a controller decides,
//! else `*` turns on the controllers that are on by default (`IsControllerEnabled` in
//! `k8s.io/controller-manager/app/helper.go`). svcplane's three controllers are all on by
//! default there. Names of kube-controller-manager's other controllers are accepted, so that
//! the same value can be given to both, and do nothing here.

use std::fmt;
use std::str::FromStr;

/// kube-controller-manager's name of the Endpoints controller.
pub const ENDPOINTS_CONTROLLER: &str = "endpoints-controller";
/// kube-controller-manager's name of the EndpointSlice controller.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller";
/// kube-controller-manager's name of the EndpointSlice mirroring controller.
pub const ENDPOINTSLICE_MIRRORING_CONTROLLER: &str = "endpointslice-mirroring-controller";

/// svcplane's controllers: kube-controller-manager's canonical name and its alias.
const OWN: [(&str, &str); 3] = [
    (ENDPOINTS_CONTROLLER, "endpoint"),
    (ENDPOINTSLICE_CONTROLLER, "endpointslice"),
    (ENDPOINTSLICE_MIRRORING_CONTROLLER, "endpointslicemirroring"),
];

/// kube-controller-manager v1.37.2's other controllers, canonical names then aliases: accepted
/// and ignored.
const OTHERS: &[&str] = &[
    "serviceaccount-token-controller",
    "replicationcontroller-controller",
    "pod-garbage-collector-controller",
    "resourcequota-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "garbage-collector-controller",
    "daemonset-controller",
    "job-controller",
    "deployment-controller",
    "replicaset-controller",
    "horizontal-pod-autoscaler-controller",
    "disruption-controller",
    "statefulset-controller",
    "cronjob-controller",
    "certificatesigningrequest-signing-controller",
    "certificatesigningrequest-approving-controller",
    "certificatesigningrequest-cleaner-controller",
    "podcertificaterequest-cleaner-controller",
    "ttl-controller",
    "bootstrap-signer-controller",
    "token-cleaner-controller",
    "node-ipam-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "device-taint-eviction-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-attach-detach-controller",
    "persistentvolume-expander-controller",
    "clusterrole-aggregation-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "podgroup-protection-controller",
    "ttl-after-finished-controller",
    "root-ca-certificate-publisher-controller",
    "kube-apiserver-serving-clustertrustbundle-publisher-controller",
    "ephemeral-volume-controller",
    "storageversion-garbage-collector-controller",
    "resourceclaim-controller",
    "resourcepoolstatusrequest-controller",
    "legacy-serviceaccount-token-cleaner-controller",
    "validatingadmissionpolicy-status-controller",
    "volumeattributesclass-protection-controller",
    "service-cidr-controller",
    "storage-version-migrator-controller",
    "selinux-warning-controller",
    "daemonset",
    "statefulset",
    "replicaset",
    "deployment",
    "horizontalpodautoscaling",
    "job",
    "cronjob",
    "bootstrapsigner",
    "tokencleaner",
    "csrsigning",
    "csrapproving",
    "csrcleaner",
    "root-ca-cert-publisher",
    "nodeipam",
    "nodelifecycle",
    "persistentvolume-binder",
    "attachdetach",
    "persistentvolume-expander",
    "ephemeral-volume",
    "replicationcontroller",
    "podgc",
    "resourcequota",
    "namespace",
    "serviceaccount",
    "ttl",
    "garbagecollector",
    "pvc-protection",
    "pv-protection",
    "ttl-after-finished",
    "legacy-service-account-token-cleaner",
    "storage-version-gc",
    "disruption",
    "clusterrole-aggregation",
    "resource-claim-controller",
    "serviceaccount-token",
    "svm",
];

/// Which of svcplane's controllers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnabledControllers {
    /// The Endpoints controller (`endpoints-controller`).
    pub endpoints: bool,
    /// The EndpointSlice controller (`endpointslice-controller`).
    pub endpointslice: bool,
    /// The EndpointSlice mirroring controller (`endpointslice-mirroring-controller`).
    pub mirroring: bool,
}

impl Default for EnabledControllers {
    /// All three, as kube-controller-manager's default `*`.
    fn default() -> Self {
        EnabledControllers {
            endpoints: true,
            endpointslice: true,
            mirroring: true,
        }
    }
}

impl EnabledControllers {
    /// Whether none runs.
    pub fn none(&self) -> bool {
        !(self.endpoints || self.endpointslice || self.mirroring)
    }

    /// The kube-controller-manager names of those that run, in the order of its names file.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.endpoints, ENDPOINTS_CONTROLLER),
            (self.endpointslice, ENDPOINTSLICE_CONTROLLER),
            (self.mirroring, ENDPOINTSLICE_MIRRORING_CONTROLLER),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// What kube-controller-manager's `--controllers` has to exclude so that no controller runs
    /// twice: `-<name>` for each controller svcplane runs.
    pub fn kube_controller_manager_exclusions(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .map(|name| format!("-{name}"))
            .collect()
    }
}

/// A `--controllers` value, as kube-controller-manager takes it: comma-separated entries,
/// each `*`, `name` or `-name`; aliases are replaced by canonical names. An empty value is an
/// empty list, which turns every controller off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerList {
    /// The entries as given.
    given: Vec<String>,
    /// The entries with aliases replaced by canonical names (`-` kept).
    canonical: Vec<String>,
}

impl Default for ControllerList {
    /// `*`, kube-controller-manager's default.
    fn default() -> Self {
        ControllerList {
            given: vec!["*".into()],
            canonical: vec!["*".into()],
        }
    }
}

/// The canonical name of one of svcplane's controllers, given its name or alias.
fn own_canonical(name: &str) -> Option<&'static str> {
    OWN.iter()
        .find(|(canonical, alias)| name == *canonical || name == *alias)
        .map(|(canonical, _)| *canonical)
}

impl FromStr for ControllerList {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let given: Vec<String> = if value.is_empty() {
            Vec::new()
        } else {
            value.split(',').map(str::to_string).collect()
        };
        let mut unknown = Vec::new();
        let canonical = given
            .iter()
            .map(|entry| {
                if entry == "*" {
                    return entry.clone();
                }
                let (sign, name) = match entry.strip_prefix('-') {
                    Some(name) => ("-", name),
                    None => ("", entry.as_str()),
                };
                match own_canonical(name) {
                    Some(canonical) => format!("{sign}{canonical}"),
                    None => {
                        if !OTHERS.contains(&name) {
                            unknown
                                .push(format!("{name:?} is not in the list of known controllers"));
                        }
                        entry.clone()
                    }
                }
            })
            .collect();
        if !unknown.is_empty() {
            return Err(unknown.join(", "));
        }
        Ok(ControllerList { given, canonical })
    }
}

impl fmt::Display for ControllerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given.join(","))
    }
}

impl ControllerList {
    /// Whether the list turns on the controller of this canonical name, which is on by default:
    /// the first entry naming it decides, else `*`.
    fn enables(&self, name: &str) -> bool {
        let mut star = false;
        for entry in &self.canonical {
            if entry == name {
                return true;
            }
            if entry.strip_prefix('-') == Some(name) {
                return false;
            }
            star |= entry == "*";
        }
        star
    }

    /// Which of svcplane's controllers run.
    pub fn enabled(&self) -> EnabledControllers {
        EnabledControllers {
            endpoints: self.enables(ENDPOINTS_CONTROLLER),
            endpointslice: self.enables(ENDPOINTSLICE_CONTROLLER),
            mirroring: self.enables(ENDPOINTSLICE_MIRRORING_CONTROLLER),
        }
    }

    /// The entries naming kube-controller-manager controllers that svcplane does not run: they
    /// are accepted, and change nothing.
    pub fn ignored(&self) -> Vec<&str> {
        self.given
            .iter()
            .filter(|entry| {
                let name = entry.strip_prefix('-').unwrap_or(entry);
                *entry != "*" && own_canonical(name).is_none()
            })
            .map(String::as_str)
            .collect()
    }

    /// Whether this is the default, `*`.
    pub fn is_default(&self) -> bool {
        *self == ControllerList::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(value: &str) -> EnabledControllers {
        value.parse::<ControllerList>().unwrap().enabled()
    }

    fn on(endpoints: bool, endpointslice: bool, mirroring: bool) -> EnabledControllers {
        EnabledControllers {
            endpoints,
            endpointslice,
            mirroring,
        }
    }

    /// `IsControllerEnabled` (k8s.io/controller-manager/app/helper.go): `*` turns on what is on
    /// by default, `-name` turns off, and without `*` only named controllers run.
    #[test]
    fn star_enables_and_a_dash_disables() {
        assert_eq!(enabled("*"), on(true, true, true));
        assert_eq!(enabled("*,-endpoints-controller"), on(false, true, true));
        assert_eq!(
            enabled("endpointslice-mirroring-controller"),
            on(false, false, true)
        );
        assert_eq!(
            enabled("endpointslice-controller,-endpoints-controller"),
            on(false, true, false)
        );
        assert_eq!(enabled(""), on(false, false, false));
        assert!(enabled("").none());
    }

    /// `IsControllerEnabled` returns at the first entry naming the controller, so the first
    /// mention wins over a later one, and over `*` wherever it stands.
    #[test]
    fn the_first_entry_naming_a_controller_decides() {
        assert_eq!(
            enabled("-endpoints-controller,endpoints-controller,*"),
            on(false, true, true)
        );
        assert_eq!(
            enabled("endpoints-controller,-endpoints-controller"),
            on(true, false, false)
        );
        assert_eq!(
            enabled("-endpointslice-controller,*"),
            on(true, false, true)
        );
    }

    /// `ApplyTo` (k8s.io/controller-manager/options/generic.go) replaces each alias from the
    /// descriptors' `aliases` (cmd/kube-controller-manager/app/core.go `endpoint`,
    /// discovery.go `endpointslice`, `endpointslicemirroring`) by its canonical name, with or
    /// without a dash.
    #[test]
    fn aliases_stand_for_canonical_names() {
        assert_eq!(
            enabled("*,-endpoint,-endpointslicemirroring"),
            on(false, true, false)
        );
        assert_eq!(enabled("endpointslice"), on(false, true, false));
        assert_eq!(
            enabled("-endpointslice,endpointslice-controller,*"),
            on(true, false, true)
        );
    }

    /// `Validate` (k8s.io/controller-manager/options/generic.go) refuses a name that is neither
    /// a controller of `NewControllerDescriptors` nor an alias, with its words; `-*` is such a
    /// name. kube-controller-manager's other controllers are accepted and ignored here.
    #[test]
    fn unknown_names_are_refused_and_other_controllers_ignored() {
        assert_eq!(
            "*,-endpoints".parse::<ControllerList>(),
            Err("\"endpoints\" is not in the list of known controllers".to_string())
        );
        assert!("-*".parse::<ControllerList>().is_err());
        assert!(
            " endpointslice-controller"
                .parse::<ControllerList>()
                .is_err()
        );
        let kubeadm: ControllerList = "*,bootstrapsigner,tokencleaner,-endpoints-controller"
            .parse()
            .unwrap();
        assert_eq!(kubeadm.enabled(), on(false, true, true));
        assert_eq!(kubeadm.ignored(), ["bootstrapsigner", "tokencleaner"]);
        let others: ControllerList = "-garbage-collector-controller,deployment,endpoint"
            .parse()
            .unwrap();
        assert_eq!(
            others.ignored(),
            ["-garbage-collector-controller", "deployment"]
        );
        assert_eq!(others.enabled(), on(true, false, false));
    }

    /// The names of cmd/kube-controller-manager/names/controller_names.go.
    #[test]
    fn the_names_are_kube_controller_managers() {
        assert_eq!(
            EnabledControllers::default().names(),
            [
                "endpoints-controller",
                "endpointslice-controller",
                "endpointslice-mirroring-controller"
            ]
        );
        assert_eq!(
            on(true, false, true).kube_controller_manager_exclusions(),
            [
                "-endpoints-controller",
                "-endpointslice-mirroring-controller"
            ]
        );
    }

    #[test]
    fn the_value_prints_as_given() {
        let list: ControllerList = "*,-endpoint".parse().unwrap();
        assert_eq!(list.to_string(), "*,-endpoint");
        assert!(!list.is_default());
        assert!(ControllerList::default().is_default());
        assert_eq!(ControllerList::default().to_string(), "*");
    }
}
