//! Releases: `/api/0/organizations/{org}/releases/[{version}/]` and
//! `/api/0/projects/{org}/{project}/releases/` (what `sentry-cli releases new|finalize|list|
//! delete` send). Deploys, commits and repositories are in [`super::deploys`].
//!
//! ```text
//!  POST {version, projects, ref?, url?, dateReleased?} ─► releases::create
//!       ─► 201 (new version; project route: newly linked) | 208 Already Reported (as Sentry)
//!  GET  ?query=<part of version>&project=<id>&cursor= ─► newest first, Link header
//!  GET | PUT {ref, url, dateReleased} | DELETE ─► 200 | 200 | 204 (400 while issues refer to it)
//! ```
//!
//! The `{version}` path segment arrives percent-decoded; versions never contain `/`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use silo_store::deploys::{self, Deploy};
use silo_store::organizations::Organization;
use silo_store::releases::{
    self, NewRelease, Release, ReleaseFilter, ReleaseProject, ReleaseUpdate,
};
use silo_store::{Page, PgPool};

use super::deploys::DeployJson;
use super::keys::double_option;
use super::{OrgPath, ProjectPath, iso, required};
use crate::error::{ApiResult, AppError};
use crate::extract::{Json, Path};
use crate::pagination::{Paginated, RequestUrl};
use crate::state::AppState;

/// Path of `/api/0/organizations/{org}/releases/{version}/...`.
#[derive(Debug, Deserialize)]
pub struct ReleasePath {
    pub organization_id_or_slug: String,
    pub version: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseJson {
    pub id: i64,
    pub version: String,
    pub status: &'static str,
    pub short_version: String,
    pub version_info: VersionInfo,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_released: Option<String>,
    pub date_created: String,
    pub data: Value,
    pub new_groups: i64,
    pub owner: Option<Value>,
    pub commit_count: i64,
    pub last_commit: Option<Value>,
    pub deploy_count: i64,
    pub last_deploy: Option<DeployJson>,
    pub authors: Vec<Value>,
    pub projects: Vec<ReleaseProjectJson>,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    pub current_project_meta: Value,
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub package: Option<String>,
    pub version: Value,
    pub description: String,
    pub build_hash: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseProjectJson {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub new_groups: i64,
    pub platform: Option<String>,
    pub platforms: Vec<String>,
    pub has_health_data: bool,
}

/// Whether `s` looks like a commit hash (at least 12 hex digits).
fn is_hash(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `package@version` split at the first `@` (a version without one has no package).
fn split_package(version: &str) -> (Option<&str>, &str) {
    match version.split_once('@') {
        Some((package, rest)) if !package.is_empty() && !rest.is_empty() => (Some(package), rest),
        _ => (None, version),
    }
}

/// What Sentry shows for a version: without its `package@` prefix, a commit hash cut to 12
/// digits. Pure.
pub fn short_version(version: &str) -> String {
    let (_, rest) = split_package(version);
    if is_hash(rest) {
        rest.chars().take(12).collect()
    } else {
        rest.to_owned()
    }
}

fn version_info(version: &str) -> VersionInfo {
    let (package, rest) = split_package(version);
    VersionInfo {
        package: package.map(str::to_owned),
        version: json!({ "raw": rest }),
        description: short_version(version),
        build_hash: is_hash(rest).then(|| rest.to_owned()),
    }
}

impl ReleaseJson {
    pub fn new(
        release: Release,
        projects: &[&ReleaseProject],
        last_deploy: Option<&Deploy>,
    ) -> Self {
        ReleaseJson {
            id: release.id,
            status: "open",
            short_version: short_version(&release.version),
            version_info: version_info(&release.version),
            git_ref: release.git_ref,
            url: release.url,
            date_released: release.date_released.map(iso),
            date_created: iso(release.date_added),
            data: json!({}),
            new_groups: release.new_groups,
            owner: None,
            commit_count: 0,
            last_commit: None,
            deploy_count: release.deploy_count,
            last_deploy: last_deploy.cloned().map(DeployJson::new),
            authors: Vec::new(),
            projects: projects
                .iter()
                .map(|p| ReleaseProjectJson {
                    id: p.id,
                    slug: p.slug.clone(),
                    name: p.name.clone(),
                    new_groups: p.new_groups,
                    platform: p.platform.clone(),
                    platforms: p.platform.iter().cloned().collect(),
                    has_health_data: false,
                })
                .collect(),
            first_event: release.first_event.map(iso),
            last_event: release.last_event.map(iso),
            current_project_meta: json!({}),
            user_agent: None,
            version: release.version,
        }
    }
}

/// Release JSON for every release of a page (their projects and last deploys in two queries).
async fn render_all(pool: &PgPool, releases: &[Release]) -> ApiResult<Rendering> {
    let ids: Vec<i64> = releases.iter().map(|r| r.id).collect();
    let projects = releases::projects_of(pool, &ids).await?;
    let deploys = deploys::last_of(pool, &ids).await?;
    Ok(Rendering { projects, deploys })
}

/// The projects and last deploys of a set of releases.
struct Rendering {
    projects: Vec<ReleaseProject>,
    deploys: Vec<Deploy>,
}

impl Rendering {
    fn render(&self, release: Release) -> ReleaseJson {
        let projects: Vec<&ReleaseProject> = self
            .projects
            .iter()
            .filter(|p| p.release_id == release.id)
            .collect();
        let deploy = self.deploys.iter().find(|d| d.release_id == release.id);
        ReleaseJson::new(release, &projects, deploy)
    }
}

/// One release as JSON.
pub async fn render(pool: &PgPool, release: Release) -> ApiResult<ReleaseJson> {
    let rendering = render_all(pool, std::slice::from_ref(&release)).await?;
    Ok(rendering.render(release))
}

async fn paginated(
    state: &AppState,
    url: &RequestUrl,
    page: Page<Release>,
) -> ApiResult<Paginated<ReleaseJson>> {
    let rendering = render_all(&state.pool, &page.items).await?;
    Ok(Paginated::new(url, page, |r| rendering.render(r)))
}

fn project_param(url: &RequestUrl) -> ApiResult<Option<i64>> {
    url.param("project")
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<i64>().map_err(|_| {
                AppError::BadRequest(format!("Invalid project {p:?}: expected a project id."))
            })
        })
        .transpose()
}

pub async fn list_for_org(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    let filter = ReleaseFilter {
        organization_id: org.id,
        project_id: project_param(&url)?,
        query: url.param("query").map(str::trim),
    };
    let page = releases::list(&state.pool, &filter, &url.page_request()?).await?;
    paginated(&state, &url, page).await
}

pub async fn list_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    url: RequestUrl,
) -> ApiResult<impl IntoResponse> {
    let (org, project) = super::project(&state, &path).await?;
    let filter = ReleaseFilter {
        organization_id: org.id,
        project_id: Some(project.id),
        query: url.param("query").map(str::trim),
    };
    let page = releases::list(&state.pool, &filter, &url.page_request()?).await?;
    paginated(&state, &url, page).await
}

/// `POST` body of both release lists (`projects` only on the organization's).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRelease {
    pub version: Option<String>,
    pub projects: Option<Vec<String>>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_released: Option<String>,
}

/// An optional ISO 8601 time field.
pub fn time(field: &str, value: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                AppError::BadRequest(format!(
                    "{field}: expected an ISO 8601 time like 2024-05-01T12:00:00Z, got {v:?}."
                ))
            }),
    }
}

fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl CreateRelease {
    fn release(&self) -> ApiResult<NewRelease> {
        let version = required("version", self.version.as_deref())?;
        if !releases::is_valid_version(&version) {
            return Err(AppError::BadRequest(format!(
                "version: {version:?} is not a valid release version: use at most {} \
                 characters without slashes, backslashes, tabs or line breaks, other than \
                 \".\", \"..\" and \"latest\".",
                releases::MAX_VERSION_LEN
            )));
        }
        Ok(NewRelease {
            version,
            git_ref: text(self.git_ref.clone()),
            url: text(self.url.clone()),
            date_released: time("dateReleased", self.date_released.as_deref())?,
        })
    }
}

/// The organization's projects named by id or slug; 400 naming the unknown ones.
async fn projects_named(
    state: &AppState,
    org: &Organization,
    names: &[String],
) -> ApiResult<Vec<i64>> {
    if names.is_empty() {
        return Err(AppError::BadRequest(
            "projects: This field is required (the slugs of the release's projects).".to_owned(),
        ));
    }
    let mut ids = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        let path = ProjectPath {
            organization_id_or_slug: org.id.to_string(),
            project_id_or_slug: name.clone(),
        };
        match super::project(state, &path).await {
            Ok((_, project)) => ids.push(project.id),
            Err(AppError::NotFound) => unknown.push(name.as_str()),
            Err(other) => return Err(other),
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::BadRequest(format!(
            "projects: Invalid project ids or slugs: {}.",
            unknown.join(", ")
        )));
    }
    Ok(ids)
}

/// 201 with the release when it is new, else 208 Already Reported (Sentry's answer, so that
/// clients can tell the two apart).
async fn created_reply(
    state: &AppState,
    org: &Organization,
    version: &str,
    new: bool,
) -> ApiResult<impl IntoResponse + use<>> {
    let release = releases::get(&state.pool, org.id, version)
        .await?
        .ok_or(AppError::NotFound)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::ALREADY_REPORTED
    };
    Ok((status, axum::Json(render(&state.pool, release).await?)))
}

pub async fn create_for_org(
    State(state): State<AppState>,
    Path(path): Path<OrgPath>,
    Json(body): Json<CreateRelease>,
) -> ApiResult<impl IntoResponse> {
    let org = super::organization(&state, &path.organization_id_or_slug).await?;
    let new = body.release()?;
    let names = body.projects.clone().unwrap_or_default();
    let project_ids = projects_named(&state, &org, &names).await?;
    let created = releases::create(&state.pool, org.id, &new, &project_ids).await?;
    if created.created {
        tracing::info!(org = %org.slug, version = %new.version, "release created");
    }
    created_reply(&state, &org, &new.version, created.created).await
}

/// `POST /api/0/projects/{org}/{project}/releases/`: 208 only when the release already
/// belonged to the project.
pub async fn create_for_project(
    State(state): State<AppState>,
    Path(path): Path<ProjectPath>,
    Json(body): Json<CreateRelease>,
) -> ApiResult<impl IntoResponse> {
    let (org, project) = super::project(&state, &path).await?;
    let new = body.release()?;
    let created = releases::create(&state.pool, org.id, &new, &[project.id]).await?;
    created_reply(
        &state,
        &org,
        &new.version,
        created.created || created.linked > 0,
    )
    .await
}

/// The release named by the path, or 404.
pub async fn find(state: &AppState, path: &ReleasePath) -> ApiResult<(Organization, Release)> {
    let org = super::organization(state, &path.organization_id_or_slug).await?;
    let release = releases::get(&state.pool, org.id, &path.version)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((org, release))
}

pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
) -> ApiResult<impl IntoResponse> {
    let (_, release) = find(&state, &path).await?;
    Ok(axum::Json(render(&state.pool, release).await?))
}

/// `PUT` body: absent fields stay, `null` clears (what `sentry-cli releases finalize` sends:
/// `{"dateReleased": "..."}`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRelease {
    #[serde(rename = "ref", default, deserialize_with = "double_option")]
    pub git_ref: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub date_released: Option<Option<String>>,
}

impl UpdateRelease {
    fn update(self) -> ApiResult<ReleaseUpdate> {
        Ok(ReleaseUpdate {
            git_ref: self.git_ref.map(text),
            url: self.url.map(text),
            date_released: self
                .date_released
                .map(|d| time("dateReleased", d.as_deref()))
                .transpose()?,
        })
    }
}

pub async fn update(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
    Json(body): Json<UpdateRelease>,
) -> ApiResult<impl IntoResponse> {
    let (org, release) = find(&state, &path).await?;
    let update = body.update()?;
    releases::update(&state.pool, release.id, &update).await?;
    let release = releases::get(&state.pool, org.id, &release.version)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(axum::Json(render(&state.pool, release).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<ReleasePath>,
) -> ApiResult<impl IntoResponse> {
    let (org, release) = find(&state, &path).await?;
    match releases::delete(&state.pool, &release).await? {
        releases::Deleted::Deleted => {
            tracing::info!(org = %org.slug, version = %release.version, "release deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        releases::Deleted::Referenced => Err(AppError::BadRequest(
            "This release is referenced by active issues and cannot be removed.".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_versions_and_version_info() {
        assert_eq!(short_version("1.0.0"), "1.0.0");
        assert_eq!(short_version("app@1.2.3+build.4"), "1.2.3+build.4");
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(short_version(sha), "0123456789ab");
        assert_eq!(short_version(&format!("app@{sha}")), "0123456789ab");
        let info = version_info("app@1.2.3");
        assert_eq!(info.package.as_deref(), Some("app"));
        assert_eq!(info.version, json!({"raw": "1.2.3"}));
        assert_eq!(info.build_hash, None);
        assert_eq!(version_info(sha).build_hash.as_deref(), Some(sha));
        assert_eq!(split_package("@1.0"), (None, "@1.0"));
    }

    #[test]
    fn bodies_say_what_is_wrong() {
        let body: CreateRelease = serde_json::from_value(json!({"projects": ["a"]})).unwrap();
        assert!(body.release().unwrap_err().to_string().contains("version"));
        let body: CreateRelease =
            serde_json::from_value(json!({"version": "a/b", "projects": ["a"]})).unwrap();
        assert!(body.release().unwrap_err().to_string().contains("a/b"));
        let body: CreateRelease =
            serde_json::from_value(json!({"version": "1", "dateReleased": "yesterday"})).unwrap();
        assert!(
            body.release()
                .unwrap_err()
                .to_string()
                .contains("dateReleased")
        );
        let update: UpdateRelease =
            serde_json::from_value(json!({"dateReleased": null, "ref": "main"})).unwrap();
        let update = update.update().unwrap();
        assert_eq!(update.date_released, Some(None));
        assert_eq!(update.git_ref, Some(Some("main".to_owned())));
        assert_eq!(update.url, None);
    }
}
