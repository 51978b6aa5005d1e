//! The `generateName` of a new EndpointSlice: its Service's (or mirrored Endpoints') name and
//! a dash, as in-tree.
//!
//! `getEndpointSlicePrefix` (k8s.io/endpointslice utils.go, and
//! pkg/controller/endpointslicemirroring/utils.go) appends the dash only when `<name>-` passes
//! `NameIsDNSSubdomain(prefix, true)` (k8s.io/apimachinery pkg/api/validation/generic.go),
//! which checks the prefix with its trailing dash masked. The apiserver then cuts the prefix to
//! 58 characters before adding 5 random ones (`SimpleNameGenerator`, k8s.io/apiserver
//! pkg/storage/names/generate.go), so a 63-character Service name, allowed under
//! RelaxedServiceNameValidation (GA in 1.37: any DNS-1123 label, leading digit included), gets
//! slices named after its first 58 characters.

/// The longest DNS-1123 subdomain.
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// Whether `value` is a DNS-1123 subdomain: at most 253 characters, dot-separated labels of
/// lowercase alphanumerics and dashes that start and end alphanumeric
/// (`IsDNS1123Subdomain`, k8s.io/apimachinery pkg/util/validation/validation.go).
fn is_dns1123_subdomain(value: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    value.len() <= DNS1123_SUBDOMAIN_MAX_LENGTH
        && value.split('.').all(|label| {
            label.starts_with(alphanumeric)
                && label.ends_with(alphanumeric)
                && label.chars().all(|c| alphanumeric(c) || c == '-')
        })
}

/// `maskTrailingDash` (generic.go): a trailing dash stands for one more character, so the
/// character before it is replaced by `a` and the dash dropped.
fn mask_trailing_dash(name: &str) -> String {
    match name.strip_suffix('-') {
        Some(rest) if name.len() > 1 => {
            let mut masked: String = rest.chars().take(rest.chars().count() - 1).collect();
            masked.push('a');
            masked
        }
        _ => name.to_string(),
    }
}

/// The `generateName` of a new slice of the object named `name`: `name-`, or `name` itself
/// when `name-` is not a valid prefix.
pub(crate) fn generate_name_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    if is_dns1123_subdomain(&mask_trailing_dash(&prefix)) {
        prefix
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `getEndpointSlicePrefix` (k8s.io/endpointslice utils.go) with the Service names
    /// RelaxedServiceNameValidation admits (`NameIsDNSLabel`, `ValidateService` in
    /// pkg/apis/core/validation/validation.go): a leading digit and the full 63 characters
    /// keep the dash; the apiserver shortens the prefix itself.
    #[test]
    fn service_names_get_a_dash() {
        assert_eq!(generate_name_prefix("web"), "web-");
        assert_eq!(generate_name_prefix("1st-api"), "1st-api-");
        let longest = format!("9{}", "a".repeat(62));
        assert_eq!(generate_name_prefix(&longest), format!("{longest}-"));
        assert_eq!(generate_name_prefix("a"), "a-");
    }

    /// Endpoints names are DNS subdomains (`ValidateEndpointsName`), up to 253 characters: the
    /// masked prefix is as long as the name, so every valid name keeps its dash; only a name
    /// that is not a valid subdomain goes without (`maskTrailingDash`, generic.go).
    #[test]
    fn endpoints_names_keep_the_dash_when_valid() {
        assert_eq!(generate_name_prefix("db.example"), "db.example-");
        let longest = "e".repeat(253);
        assert_eq!(generate_name_prefix(&longest), format!("{longest}-"));
        assert_eq!(generate_name_prefix(&"e".repeat(254)), "e".repeat(254));
        assert_eq!(generate_name_prefix("Upper"), "Upper");
        assert_eq!(mask_trailing_dash("web-"), "wea");
        assert_eq!(mask_trailing_dash("-"), "-");
    }

    #[test]
    fn subdomains_are_checked_label_by_label() {
        assert!(is_dns1123_subdomain("a.b-c.1"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a_b"));
    }
}
