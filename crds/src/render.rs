//! The CRD manifests: building them from the types and rendering them to YAML.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool, JSONSchemaPropsOrStringArray,
};
use kube::core::crd::CustomResourceExt;

use crate::{SpiderEndpoint, SpiderIPClaim, SpiderIPPool, SpiderReservedIP, SpiderSubnet};

/// The command that regenerates `config/crd/` (named in the generated files and in test failures).
pub const GENERATOR_COMMAND: &str = "cargo run -p aipam-crds --bin crdgen";

/// Failure to render a CRD.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The CRD could not be serialised to YAML.
    #[error("serialising CRD {name} to YAML: {source}")]
    Yaml {
        /// `metadata.name` of the CRD.
        name: String,
        /// The serialiser's error.
        #[source]
        source: serde_yaml::Error,
    },
}

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Every CRD of this crate, in a fixed order: SpiderIPPool, SpiderSubnet, SpiderEndpoint,
/// SpiderReservedIP, SpiderIPClaim.
///
/// The CRDs come from kube-derive, then are brought in line with Spiderpool's generated CRDs:
/// no `nullable` (Spiderpool's schemas have none, so a `null` is pruned as there), `apiVersion`,
/// `kind` and `metadata` declared at the root as controller-gen does, and SpiderEndpoint without
/// the status subresource (Spiderpool writes its status with the object).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        SpiderIPPool::crd(),
        SpiderSubnet::crd(),
        SpiderEndpoint::crd(),
        SpiderReservedIP::crd(),
        SpiderIPClaim::crd(),
    ];
    for crd in &mut crds {
        crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
        let is_endpoint = crd.spec.names.kind == "SpiderEndpoint";
        for version in &mut crd.spec.versions {
            if let Some(root) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                walk_mut(root, &mut |node| {
                    node.nullable = None;
                    mark_label_selector_atomic(node);
                });
                add_root_fields(root);
                root.title = None;
            }
            if is_endpoint {
                // Spiderpool: `subresources: {}` (status is part of the main resource).
                version.subresources = Some(CustomResourceSubresources {
                    scale: None,
                    status: None,
                });
            }
        }
    }
    crds
}

/// Spiderpool's (controller-gen's) LabelSelector schema marks the selector as an atomic map and
/// its lists as atomic lists (server-side apply replaces them whole); k8s-openapi's does not.
fn mark_label_selector_atomic(node: &mut JSONSchemaProps) {
    let Some(props) = node.properties.as_mut() else {
        return;
    };
    let is_selector = props.len() == 2
        && props.contains_key("matchLabels")
        && props.contains_key("matchExpressions");
    if !is_selector {
        return;
    }
    if let Some(exprs) = props.get_mut("matchExpressions") {
        exprs.x_kubernetes_list_type = Some("atomic".into());
        if let Some(JSONSchemaPropsOrArray::Schema(item)) = exprs.items.as_mut() {
            if let Some(values) = item.properties.as_mut().and_then(|p| p.get_mut("values")) {
                values.x_kubernetes_list_type = Some("atomic".into());
            }
        }
    }
    node.x_kubernetes_map_type = Some("atomic".into());
}

fn add_root_fields(root: &mut JSONSchemaProps) {
    let props = root.properties.get_or_insert_with(BTreeMap::new);
    props.insert(
        "apiVersion".into(),
        JSONSchemaProps {
            description: Some(API_VERSION_DESCRIPTION.into()),
            type_: Some("string".into()),
            ..Default::default()
        },
    );
    props.insert(
        "kind".into(),
        JSONSchemaProps {
            description: Some(KIND_DESCRIPTION.into()),
            type_: Some("string".into()),
            ..Default::default()
        },
    );
    props.insert(
        "metadata".into(),
        JSONSchemaProps {
            type_: Some("object".into()),
            ..Default::default()
        },
    );
    root.type_ = Some("object".into());
}

/// Calls `f` on `node` and on every schema nested in it.
fn walk_mut(node: &mut JSONSchemaProps, f: &mut dyn FnMut(&mut JSONSchemaProps)) {
    f(node);
    let maps = [
        node.properties.as_mut(),
        node.pattern_properties.as_mut(),
        node.definitions.as_mut(),
    ];
    for map in maps.into_iter().flatten() {
        for child in map.values_mut() {
            walk_mut(child, f);
        }
    }
    for list in [
        node.all_of.as_mut(),
        node.any_of.as_mut(),
        node.one_of.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for child in list {
            walk_mut(child, f);
        }
    }
    if let Some(not) = node.not.as_mut() {
        walk_mut(not, f);
    }
    match node.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => walk_mut(s, f),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(|s| walk_mut(s, f)),
        None => {}
    }
    for extra in [
        node.additional_properties.as_mut(),
        node.additional_items.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let JSONSchemaPropsOrBool::Schema(s) = extra {
            walk_mut(s, f);
        }
    }
    if let Some(deps) = node.dependencies.as_mut() {
        for dep in deps.values_mut() {
            if let JSONSchemaPropsOrStringArray::Schema(s) = dep {
                walk_mut(s, f);
            }
        }
    }
}

/// The file a CRD is written to in `config/crd/`: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as YAML, with a header saying it is generated and by which command. Deterministic:
/// the same types always give the same bytes.
pub fn render_crd(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    let body = serde_yaml::to_string(crd).map_err(|source| RenderError::Yaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!(
        "# Code generated by `{GENERATOR_COMMAND}` from the aipam-crds crate (crds/src/). DO NOT EDIT.\n---\n{body}"
    ))
}

/// Every CRD rendered: `(file name, YAML)`, in the order of [`all_crds`].
pub fn render_all() -> Result<Vec<(String, String)>, RenderError> {
    let mut files = all_crds()
        .iter()
        .map(|crd| Ok((crd_file_name(crd), render_crd(crd)?)))
        .collect::<Result<Vec<_>, RenderError>>()?;
    files.push((KUSTOMIZATION_FILE.to_string(), render_kustomization(&files)));
    Ok(files)
}

/// The kustomize entry point of `config/crd/`, generated with the CRDs. Named `Kustomization`
/// (a name kustomize reads) rather than `kustomization.yaml`, so that tools taking every
/// `*.yaml` of the directory for a CRD (the API stand-in's `--crd-dir`) do not see it.
pub const KUSTOMIZATION_FILE: &str = "Kustomization";

fn render_kustomization(files: &[(String, String)]) -> String {
    let mut names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut out = format!(
        "# Code generated by `{GENERATOR_COMMAND}` from the aipam-crds crate (crds/src/). DO NOT EDIT.\n\
         # The generated CRDs as a kustomize base (used by config/default).\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    );
    for n in names {
        out.push_str(&format!("  - {n}\n"));
    }
    out
}
