"""task lane: one active task per user and lane (the export and the import of posts share one)

Revision ID: imp_0001_task_lane
Revises: a25b1ee9524e
Create Date: 2026-12-01 20:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'imp_0001_task_lane'
down_revision = 'ux_0001_task_counts'  # chained at the merge
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('queued', 'started')")
# The lanes of the kinds that existed when this ran (app/jobs JOBS); any other kind is its own lane.
BACKFILL = "UPDATE task SET lane = CASE WHEN name IN ('export_posts', 'import_posts') THEN 'posts' ELSE name END"


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.String(length=64), nullable=True))
    op.execute(BACKFILL)
    if op.get_bind().dialect.name == "mysql":
        # No partial index there: scale_0001's unique index over the generated `active_user_id`
        # (NULL once ended) moves from (active_user_id, name) to (active_user_id, lane).
        op.alter_column('task', 'lane', existing_type=sa.String(length=64), nullable=False)
        op.drop_index('uq_task_one_active_per_user', table_name='task')
        op.create_index('uq_task_one_active_per_user', 'task', ['active_user_id', 'lane'], unique=True)
        return
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.alter_column('lane', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_index('uq_task_one_active_per_user', sqlite_where=ACTIVE, postgresql_where=ACTIVE)
        batch_op.create_index('uq_task_one_active_per_user', ['user_id', 'lane'], unique=True,
                              sqlite_where=ACTIVE, postgresql_where=ACTIVE)


def downgrade():
    if op.get_bind().dialect.name == "mysql":
        op.drop_index('uq_task_one_active_per_user', table_name='task')
        op.create_index('uq_task_one_active_per_user', 'task', ['active_user_id', 'name'], unique=True)
        op.drop_column('task', 'lane')
        return
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_index('uq_task_one_active_per_user', sqlite_where=ACTIVE, postgresql_where=ACTIVE)
        batch_op.create_index('uq_task_one_active_per_user', ['user_id', 'name'], unique=True,
                              sqlite_where=ACTIVE, postgresql_where=ACTIVE)
        batch_op.drop_column('lane')
