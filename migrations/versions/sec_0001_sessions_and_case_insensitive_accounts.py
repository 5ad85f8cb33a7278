"""login sessions; usernames and emails unique regardless of case

Revision ID: sec_0001
Revises: a25b1ee9524e
Create Date: 2026-12-01 20:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = "sec_0001"
down_revision = "scale_0001_mysql_one_active_task"  # chained at the merge
branch_labels = None
depends_on = None


def _refuse_case_duplicates() -> None:
    """Stop with a clear message rather than guess which of two case-variant accounts to keep."""
    bind = op.get_bind()
    for column in ("username", "email"):
        rows = bind.execute(sa.text(
            f'SELECT lower({column}) AS v, count(*) AS n FROM "user" GROUP BY lower({column}) HAVING count(*) > 1'
            if bind.dialect.name != "mysql" else
            f"SELECT lower({column}) AS v, count(*) AS n FROM `user` GROUP BY lower({column}) HAVING count(*) > 1"
        )).fetchall()
        if rows:
            names = ", ".join(f"{r[0]!r} ({r[1]} accounts)" for r in rows[:10])
            raise RuntimeError(
                f"Cannot make {column}s unique regardless of case: these differ only in case: {names}. "
                f"Rename or delete the extra accounts (e.g. with `flask shell`), then run the upgrade again."
            )


def upgrade():
    _refuse_case_duplicates()  # first: SQLite does not roll DDL back, so fail before creating anything
    op.create_table(
        "user_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_user_session_user_id_user"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_session")),
    )
    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_session_user_id"), ["user_id"], unique=False)

    if op.get_bind().dialect.name != "mysql":
        op.create_index("uq_user_username_lower", "user", [sa.text("lower(username)")], unique=True)
        op.create_index("uq_user_email_lower", "user", [sa.text("lower(email)")], unique=True)
    else:
        # MariaDB has no expression indexes, and a deployment may use a case-sensitive collation
        # (utf8mb4_bin, as the tests do): index stored generated columns holding the lower-case form.
        for column, length in (("username", 64), ("email", 120)):
            op.add_column("user", sa.Column(f"{column}_lower", sa.String(length),
                                            sa.Computed(f"lower({column})", persisted=True), nullable=True))
            op.create_index(f"uq_user_{column}_lower", "user", [f"{column}_lower"], unique=True)


def downgrade():
    op.drop_index("uq_user_email_lower", table_name="user")
    op.drop_index("uq_user_username_lower", table_name="user")
    if op.get_bind().dialect.name == "mysql":
        op.drop_column("user", "email_lower")
        op.drop_column("user", "username_lower")
    # Dropping the table drops its index too (MySQL refuses to drop an index a foreign key needs).
    op.drop_table("user_session")
