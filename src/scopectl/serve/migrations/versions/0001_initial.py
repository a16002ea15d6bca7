"""The first schema: clinics, users, sessions, login attempts, cases, captures, jobs, models, reports, audit.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _pk(table: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=f"pk_{table}")


def _fk(table: str, col: str, ref: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([col], [f"{ref}.id"], name=f"fk_{table}_{col}_{ref}")


def upgrade() -> None:
    op.create_table(
        "clinics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _pk("clinics", "id"),
        sa.UniqueConstraint("name", name="uq_clinics_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _pk("users", "id"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
        _fk("users", "clinic_id", "clinics"),
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        _pk("sessions", "id_hash"),
        _fk("sessions", "user_id", "users"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        _pk("login_attempts", "id"),
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "at"])
    op.create_index("ix_login_attempts_ip_at", "login_attempts", ["ip", "at"])
    op.create_table(
        "cases",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("sample_type", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("pixel_size_um", sa.Float(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _pk("cases", "id"),
        sa.UniqueConstraint("clinic_id", "ref", name="uq_cases_clinic_id_ref"),
        _fk("cases", "clinic_id", "clinics"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_cases_created_by_users"),
    )
    op.create_index("ix_cases_clinic_id", "cases", ["clinic_id"])
    op.create_table(
        "captures",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("case_id", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("pixel_size_um", sa.Float(), nullable=True),
        sa.Column("pixel_size_source", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(120), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", sa.Float(), nullable=False),
        _pk("captures", "id"),
        sa.UniqueConstraint("case_id", "sha256", name="uq_captures_case_id_sha256"),
        _fk("captures", "case_id", "cases"),
        sa.ForeignKeyConstraint(["uploaded_by"], ["users.id"], name="fk_captures_uploaded_by_users"),
    )
    op.create_index("ix_captures_case_id", "captures", ["case_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_name", sa.String(100), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("model_checked", sa.Boolean(), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("precision", sa.String(8), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("out_rows", sa.Integer(), nullable=True),
        sa.Column("out_cols", sa.Integer(), nullable=True),
        sa.Column("in_pixel_size_um", sa.Float(), nullable=True),
        sa.Column("out_pixel_size_um", sa.Float(), nullable=True),
        sa.Column("resampled", sa.Boolean(), nullable=True),
        _pk("jobs", "id"),
        _fk("jobs", "capture_id", "captures"),
    )
    op.create_index("ix_jobs_capture_id", "jobs", ["capture_id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "model_assignments",
        sa.Column("sample_type", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("assigned_by", sa.Integer(), nullable=True),
        sa.Column("assigned_at", sa.Float(), nullable=False),
        _pk("model_assignments", "sample_type"),
        sa.ForeignKeyConstraint(["assigned_by"], ["users.id"], name="fk_model_assignments_assigned_by_users"),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.String(16), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        _pk("reports", "id"),
        _fk("reports", "case_id", "cases"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_reports_author_id_users"),
    )
    op.create_index("ix_reports_case_id", "reports", ["case_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(16), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        _pk("audit", "id"),
        _fk("audit", "user_id", "users"),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        _pk("workers", "id"),
    )


def downgrade() -> None:
    for table in (
        "workers",
        "audit",
        "reports",
        "model_assignments",
        "jobs",
        "captures",
        "cases",
        "login_attempts",
        "sessions",
        "users",
        "clinics",
    ):
        op.drop_table(table)
