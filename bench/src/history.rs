//! The `deployments` row one report makes (a deployment's first report), as
//! the baselines write it. COPY, the row-at-a-time INSERT and Kafka Connect
//! all take their columns and values from here, so they write the same rows.

use vibemon_schemas::DeploymentReported;

/// A column of `deployments`: its name, Postgres type, and whether it may
/// be NULL.
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub nullable: bool,
}

const fn col(name: &'static str, sql_type: &'static str, nullable: bool) -> Column {
    Column {
        name,
        sql_type,
        nullable,
    }
}

/// Every column the projector writes but `projected_at`, in table order.
pub const COLUMNS: [Column; 17] = [
    col("id", "uuid", false),
    col("workspace_id", "uuid", false),
    col("environment_id", "uuid", false),
    col("environment", "text", false),
    col("repo_full_name", "text", false),
    col("branch", "text", true),
    col("commit_sha", "text", true),
    col("status", "text", false),
    col("source", "text", false),
    col("deployed_at", "timestamptz", false),
    col("extra_data", "jsonb", false),
    col("external_id", "text", true),
    col("created_at", "timestamptz", false),
    col("updated_at", "timestamptz", false),
    col("status_rank", "int2", false),
    col("last_event_id", "uuid", false),
    col("reports", "int4", false),
];

/// The column names, comma-separated, for SQL.
pub fn column_list() -> String {
    COLUMNS.map(|c| c.name).join(", ")
}

/// The row's values in column order, as text Postgres casts to each
/// column's type; `None` is NULL.
pub fn values(e: &DeploymentReported) -> [Option<String>; 17] {
    [
        Some(e.deployment_id.to_string()),
        Some(e.workspace_id.to_string()),
        Some(e.environment_id.to_string()),
        Some(e.environment.as_str().to_owned()),
        Some(e.repository.as_str().to_owned()),
        e.branch.as_ref().map(|b| b.as_str().to_owned()),
        e.commit_sha.as_ref().map(|c| c.as_str().to_owned()),
        Some(e.status.as_str().to_owned()),
        Some(e.source.as_str().to_owned()),
        Some(e.deployed_at.to_rfc3339()),
        Some(serde_json::to_string(&e.extra_data).expect("serializes")),
        e.external_id.as_ref().map(|x| x.as_str().to_owned()),
        Some(e.received_at.to_rfc3339()),
        Some(e.received_at.to_rfc3339()),
        Some(e.status.rank().to_string()),
        Some(e.event_id.to_string()),
        Some("1".to_owned()),
    ]
}

/// Appends the row in COPY's text format, newline-terminated.
pub fn copy_line(e: &DeploymentReported, out: &mut String) {
    let fields: Vec<String> = values(e)
        .into_iter()
        .map(|v| {
            v.map_or_else(
                || "\\N".to_owned(),
                |s| {
                    s.replace('\\', "\\\\")
                        .replace('\t', "\\t")
                        .replace('\n', "\\n")
                },
            )
        })
        .collect();
    out.push_str(&fields.join("\t"));
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_line_has_one_field_per_column_and_escapes_tabs() {
        let mut e = crate::projector::events(1).remove(0);
        e.extra_data = vibemon_schemas::ExtraData::parse(
            serde_json::json!({"note": "a\tb"})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        let mut text = String::new();
        copy_line(&e, &mut text);
        let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
        assert_eq!(fields.len(), COLUMNS.len());
        assert!(text.contains("a\\\\tb"), "{text}");
        assert_eq!(fields[11], "\\N", "no external id is NULL");
    }

    #[test]
    fn only_nullable_columns_get_nulls() {
        let e = crate::projector::events(1).remove(0);
        for (column, value) in COLUMNS.iter().zip(values(&e)) {
            assert!(
                value.is_some() || column.nullable,
                "{} is NULL",
                column.name
            );
        }
    }
}
