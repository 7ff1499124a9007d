//! Accounts, sessions, login throttling, invitations and the hash-chained audit trail.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppUser {
    Table,
    Id,
    Email,
    Name,
    Role,
    Status,
    Phone,
    Timezone,
    PasswordHash,
    TotpSecret,
    TotpEnabled,
    TotpLastStep,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Session {
    Table,
    Id,
    UserId,
    Kind,
    CookieHash,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
    RevokedReason,
    Ip,
    UserAgent,
}

#[derive(DeriveIden)]
enum RefreshToken {
    Table,
    TokenHash,
    SessionId,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    Key,
    Failures,
    WindowStartedAt,
    LockedUntil,
    LockCount,
}

#[derive(DeriveIden)]
enum Invitation {
    Table,
    Id,
    Email,
    Role,
    CaseId,
    TokenHash,
    InvitedBy,
    ExpiresAt,
    AcceptedAt,
    AcceptedUserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    Action,
    ResourceType,
    ResourceId,
    CaseId,
    Outcome,
    Ip,
    UserAgent,
    Details,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    LastId,
    LastHash,
}

fn idx(name: &str, table: impl IntoIden + 'static, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AppUser::Table)
                .col(pk_uuid(AppUser::Id))
                .col(string_len(AppUser::Email, 254))
                .col(string_len(AppUser::Name, 200))
                .col(string_len(AppUser::Role, 16))
                .col(string_len(AppUser::Status, 16))
                .col(string_len_null(AppUser::Phone, 40))
                .col(string_len(AppUser::Timezone, 64))
                .col(string_null(AppUser::PasswordHash))
                .col(blob_null(AppUser::TotpSecret))
                .col(boolean(AppUser::TotpEnabled).default(false))
                .col(big_integer_null(AppUser::TotpLastStep))
                .col(timestamp_with_time_zone(AppUser::CreatedAt))
                .col(timestamp_with_time_zone(AppUser::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            idx("uq_app_user_email", AppUser::Table, &["email"])
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_app_user_role_name",
            AppUser::Table,
            &["role", "name", "id"],
        ))
        .await?;
        m.create_index(idx("ix_app_user_name", AppUser::Table, &["name", "id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(Session::Table)
                .col(pk_uuid(Session::Id))
                .col(uuid(Session::UserId))
                .col(string_len(Session::Kind, 16))
                .col(string_len_null(Session::CookieHash, 64))
                .col(timestamp_with_time_zone(Session::CreatedAt))
                .col(timestamp_with_time_zone(Session::LastUsedAt))
                .col(timestamp_with_time_zone(Session::ExpiresAt))
                .col(timestamp_with_time_zone_null(Session::RevokedAt))
                .col(string_len_null(Session::RevokedReason, 32))
                .col(string_len_null(Session::Ip, 64))
                .col(string_len_null(Session::UserAgent, 256))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_session_user")
                        .from(Session::Table, Session::UserId)
                        .to(AppUser::Table, AppUser::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_session_user",
            Session::Table,
            &["user_id", "created_at"],
        ))
        .await?;
        m.create_index(
            idx("uq_session_cookie_hash", Session::Table, &["cookie_hash"])
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RefreshToken::Table)
                .col(string_len(RefreshToken::TokenHash, 64).primary_key())
                .col(uuid(RefreshToken::SessionId))
                .col(timestamp_with_time_zone(RefreshToken::CreatedAt))
                .col(timestamp_with_time_zone_null(RefreshToken::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_refresh_token_session")
                        .from(RefreshToken::Table, RefreshToken::SessionId)
                        .to(Session::Table, Session::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_refresh_token_session",
            RefreshToken::Table,
            &["session_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(LoginThrottle::Table)
                .col(string_len(LoginThrottle::Key, 300).primary_key())
                .col(integer(LoginThrottle::Failures))
                .col(timestamp_with_time_zone(LoginThrottle::WindowStartedAt))
                .col(timestamp_with_time_zone_null(LoginThrottle::LockedUntil))
                .col(integer(LoginThrottle::LockCount))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Invitation::Table)
                .col(pk_uuid(Invitation::Id))
                .col(string_len(Invitation::Email, 254))
                .col(string_len(Invitation::Role, 16))
                .col(uuid_null(Invitation::CaseId))
                .col(string_len(Invitation::TokenHash, 64))
                .col(uuid_null(Invitation::InvitedBy))
                .col(timestamp_with_time_zone(Invitation::ExpiresAt))
                .col(timestamp_with_time_zone_null(Invitation::AcceptedAt))
                .col(uuid_null(Invitation::AcceptedUserId))
                .col(timestamp_with_time_zone(Invitation::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_invitation_invited_by")
                        .from(Invitation::Table, Invitation::InvitedBy)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            idx(
                "uq_invitation_token_hash",
                Invitation::Table,
                &["token_hash"],
            )
            .unique()
            .to_owned(),
        )
        .await?;
        m.create_index(idx("ix_invitation_email", Invitation::Table, &["email"]))
            .await?;
        m.create_index(idx(
            "ix_invitation_invited_by",
            Invitation::Table,
            &["invited_by"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_integer(AuditLog::Id).primary_key())
                .col(timestamp_with_time_zone(AuditLog::At))
                .col(uuid_null(AuditLog::ActorId))
                .col(string_len(AuditLog::Action, 64))
                .col(string_len(AuditLog::ResourceType, 32))
                .col(string_len_null(AuditLog::ResourceId, 64))
                .col(uuid_null(AuditLog::CaseId))
                .col(string_len(AuditLog::Outcome, 16))
                .col(string_len_null(AuditLog::Ip, 64))
                .col(string_len_null(AuditLog::UserAgent, 256))
                .col(text(AuditLog::Details))
                .col(string_len(AuditLog::PrevHash, 64))
                .col(string_len(AuditLog::Hash, 64))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_audit_log_actor", &["actor_id", "id"][..]),
            ("ix_audit_log_action", &["action", "id"][..]),
            (
                "ix_audit_log_resource",
                &["resource_type", "resource_id", "id"][..],
            ),
            ("ix_audit_log_case", &["case_id", "id"][..]),
            ("ix_audit_log_outcome", &["outcome", "id"][..]),
            ("ix_audit_log_at", &["at"][..]),
        ] {
            m.create_index(idx(name, AuditLog::Table, cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(AuditHead::Table)
                .col(integer(AuditHead::Id).primary_key())
                .col(big_integer(AuditHead::LastId))
                .col(string_len(AuditHead::LastHash, 64))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(AuditHead::Table)
                .columns([AuditHead::Id, AuditHead::LastId, AuditHead::LastHash])
                .values_panic([1.into(), 0i64.into(), "0".repeat(64).into()])
                .to_owned(),
        )
        .await?;

        // Defence in depth: the application never updates or deletes audit rows, so the
        // database refuses to as well. (The hash chain still catches whoever drops these.)
        let conn = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
                     CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
                     FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();",
                )
                .await?;
            }
            _ => {
                conn.execute_unprepared(
                    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
                )
                .await?;
                conn.execute_unprepared(
                    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
                )
                .await?;
            }
        }
        Ok(())
    }
}
