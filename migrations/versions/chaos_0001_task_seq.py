"""task.seq: a per-task sequence number carried in every task_progress event

Revision ID: chaos_0001_task_seq
Revises: rel_0001_task_heartbeat
Create Date: 2026-12-01 19:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'chaos_0001_task_seq'
down_revision = 'rel_0001_task_heartbeat'  # chained after rel's for this branch; the integrator re-chains
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('seq')
