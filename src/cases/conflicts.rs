//! Conflict checks: does a prospective client or opponent already appear anywhere in the firm?
//! Names are normalised (accents, case, punctuation, word order, honorifics, company suffixes)
//! and compared with a typo-tolerant score, so "Smith, Jon" finds "John Smith".

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    access,
    domain::MemberRole,
    entity::{legal_case, member, party},
};
use crate::{
    AppState,
    audit::NewEntry,
    auth::Principal,
    error::{Error, Result, Validator},
};

/// Scores at or above this are reported.
pub const THRESHOLD: f64 = 0.8;

fn canonical_token(t: &str) -> Option<&str> {
    Some(match t {
        "mr" | "mrs" | "ms" | "miss" | "dr" | "prof" | "esq" | "the" => return None,
        "corporation" => "corp",
        "incorporated" => "inc",
        "company" => "co",
        "limited" => "ltd",
        other => other,
    })
}

/// Lower-case ASCII words, sorted, without honorifics; "O'Brien, José" → "brien jose o"… with
/// apostrophes joined first so "O'Brien" stays one word ("jose obrien").
pub fn normalize_name(raw: &str) -> String {
    let ascii = deunicode::deunicode(raw)
        .to_lowercase()
        .replace(['\'', '’', '`'], "");
    let mut tokens: Vec<&str> = ascii
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .filter_map(canonical_token)
        .collect();
    tokens.sort_unstable();
    tokens.join(" ")
}

/// Similarity of two normalised names in 0..=1.
pub fn similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return if a.is_empty() { 0.0 } else { 1.0 };
    }
    let words = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (mut ta, mut tb) = (words(a), words(b));
    // Middle initials only count when nothing else is there.
    let long = |v: &Vec<String>| v.iter().filter(|t| t.len() > 1).count();
    if long(&ta) >= 2 && long(&tb) >= 2 {
        ta.retain(|t| t.len() > 1);
        tb.retain(|t| t.len() > 1);
    }
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    // Each word of the shorter name against its best match in the longer one; with as many
    // words on both sides, the better direction, so the score does not depend on which name
    // is the query.
    let directed = |short: &[String], longer: &[String]| -> f64 {
        short
            .iter()
            .map(|t| {
                longer
                    .iter()
                    .map(|u| strsim::normalized_damerau_levenshtein(t, u))
                    .fold(0.0, f64::max)
            })
            .sum::<f64>()
            / short.len() as f64
    };
    let avg = match ta.len().cmp(&tb.len()) {
        std::cmp::Ordering::Less => directed(&ta, &tb),
        std::cmp::Ordering::Greater => directed(&tb, &ta),
        std::cmp::Ordering::Equal => directed(&ta, &tb).max(directed(&tb, &ta)),
    };
    let coverage = ta.len().min(tb.len()) as f64 / ta.len().max(tb.len()) as f64;
    let token_score = avg * (0.85 + 0.15 * coverage);
    let joined = strsim::normalized_damerau_levenshtein(&ta.concat(), &tb.concat());
    token_score.max(joined)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConflictCheck {
    pub names: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictMatch {
    /// The name found in the firm's records.
    pub name: String,
    /// The name from the request that it matched.
    pub query: String,
    /// Only for cases the caller is on (or admins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    pub case_number: Option<String>,
    /// `client` or the party kind (`opposing_party`, `opposing_counsel`, `witness`, `related`).
    pub role: String,
    pub similarity: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictResult {
    pub matches: Vec<ConflictMatch>,
}

/// `POST /conflict-checks` (staff): searches every client and party of the firm.
pub async fn check(
    state: &AppState,
    p: &Principal,
    input: ConflictCheck,
) -> Result<ConflictResult> {
    if !p.is_staff() {
        return Err(Error::Forbidden("Only staff may run conflict checks."));
    }
    state
        .limits
        .check(crate::limits::Action::ConflictCheck, &p.user_id.to_string())?;
    let mut v = Validator::default();
    if input.names.is_empty() || input.names.len() > 50 {
        v.push("names", "give 1 to 50 names");
    }
    let queries: Vec<(String, String)> = input
        .names
        .iter()
        .map(|n| n.trim().to_string())
        .map(|n| (normalize_name(&n), n))
        .collect();
    for (i, (norm, raw)) in queries.iter().enumerate() {
        if norm.is_empty() || raw.chars().count() > 300 {
            v.push(
                &format!("names[{i}]"),
                "must contain letters or digits (at most 300 characters)",
            );
        }
    }
    v.finish()?;

    // Candidates: (display name, normalised, case, role).
    let mut candidates: Vec<(String, String, Option<Uuid>, String)> = Vec::new();
    let clients = crate::users::service::all_clients(&state.db).await?;
    let client_cases: Vec<(Uuid, Uuid)> = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .column(member::Column::CaseId)
        .filter(member::Column::Role.eq(MemberRole::Client.as_str()))
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut cases_of: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (user, case) in client_cases {
        cases_of.entry(user).or_default().push(case);
    }
    for (id, name) in clients {
        let norm = normalize_name(&name);
        match cases_of.get(&id) {
            Some(cs) => {
                for c in cs {
                    candidates.push((name.clone(), norm.clone(), Some(*c), "client".into()));
                }
            }
            None => candidates.push((name, norm, None, "client".into())),
        }
    }
    let parties: Vec<(String, String, Uuid, String)> = party::Entity::find()
        .select_only()
        .column(party::Column::Name)
        .column(party::Column::NormalizedName)
        .column(party::Column::CaseId)
        .column(party::Column::Kind)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    candidates.extend(
        parties
            .into_iter()
            .map(|(n, norm, c, k)| (n, norm, Some(c), k)),
    );

    // CPU-bound over every candidate: run it on the blocking pool, not the async executor.
    let query_list = queries.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut found: Vec<(String, String, Option<Uuid>, String, f64)> = Vec::new();
        for (qnorm, qraw) in &query_list {
            for (name, norm, case, role) in &candidates {
                let s = similarity(qnorm, norm);
                if s >= THRESHOLD {
                    found.push((
                        name.clone(),
                        qraw.clone(),
                        *case,
                        role.clone(),
                        (s * 1000.0).round() / 1000.0,
                    ));
                }
            }
        }
        found.sort_by(|a, b| b.4.total_cmp(&a.4).then_with(|| a.0.cmp(&b.0)));
        found.truncate(200);
        found
    })
    .await
    .map_err(|e| anyhow::anyhow!("conflict scoring task: {e}"))?;

    let case_ids: Vec<Uuid> = found.iter().filter_map(|f| f.2).collect();
    let numbers: HashMap<Uuid, String> = legal_case::Entity::find()
        .select_only()
        .column(legal_case::Column::Id)
        .column(legal_case::Column::Number)
        .filter(legal_case::Column::Id.is_in(case_ids))
        .into_tuple::<(Uuid, String)>()
        .all(state.db.conn())
        .await?
        .into_iter()
        .collect();
    let mine: std::collections::HashSet<Uuid> = if p.is_admin() {
        Default::default()
    } else {
        access::case_ids_of(state.db.conn(), p.user_id, false)
            .await?
            .into_iter()
            .collect()
    };
    let matches: Vec<ConflictMatch> = found
        .into_iter()
        .map(|(name, query, case, role, similarity)| ConflictMatch {
            name,
            query,
            case_number: case.and_then(|c| numbers.get(&c).cloned()),
            case_id: case.filter(|c| p.is_admin() || mine.contains(c)),
            role,
            similarity,
        })
        .collect();
    state
        .audit
        .record(
            NewEntry::new("conflict.check", "conflict_check")
                .by(p)
                .details(serde_json::json!({
                    "names": queries.iter().map(|q| &q.1).collect::<Vec<_>>(),
                    "matches": matches.len(),
                })),
        )
        .await?;
    Ok(ConflictResult { matches })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(a: &str, b: &str) -> f64 {
        similarity(&normalize_name(a), &normalize_name(b))
    }

    #[test]
    fn tricky_names_match() {
        for (a, b) in [
            ("José Álvarez", "Jose Alvarez"),
            ("Smith, John", "John Smith"),
            ("JOHN SMITH", "john smith"),
            ("Jon Smith", "John Smith"),
            ("John A. Smith", "John Smith"),
            ("O'Brien, Patrick", "Patrick OBrien"),
            ("Catherine Zeta-Jones", "Catherine Zeta Jones"),
            ("Acme Corporation", "ACME Corp."),
            ("Müller GmbH", "Mueller GmbH"),
            ("Dr. Ann Lee", "Ann Lee"),
            ("Jonathan Smyth", "Jonathan Smith"),
        ] {
            assert!(score(a, b) >= THRESHOLD, "{a} ~ {b}: {}", score(a, b));
        }
    }

    #[test]
    fn different_people_do_not_match() {
        for (a, b) in [
            ("Jane Doe", "John Smith"),
            ("Jane Smith", "John Smith"),
            ("Ann Lee", "Anna Leeds-Whitmore"),
            ("Acme Corp", "Apex Corp"),
            ("Li", "Lu"),
        ] {
            assert!(score(a, b) < THRESHOLD, "{a} ~ {b}: {}", score(a, b));
        }
    }

    #[test]
    fn exact_is_one_and_empty_is_zero() {
        assert_eq!(score("Ann Lee", "Lee, Ann"), 1.0);
        assert_eq!(similarity("", ""), 0.0);
        assert_eq!(normalize_name("  Mr. O’Brien  "), "obrien");
    }
}
