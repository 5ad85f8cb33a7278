"""index on task.finished_at: the sweeper re-announces recent endings, retention finds old ones

Revision ID: rel_0002_finished_at
Revises: i18n_0001
Create Date: 2026-12-02 03:20:00

"""
from alembic import op


revision = 'rel_0002_finished_at'
down_revision = 'i18n_0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_task_finished_at', 'task', ['finished_at'])


def downgrade():
    op.drop_index('ix_task_finished_at', table_name='task')
