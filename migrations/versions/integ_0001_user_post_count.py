"""user.post_count: a maintained count of each user's posts (the profile shows it without COUNT(*))

Revision ID: integ_0001_user_post_count
Revises: imp_0001_task_lane
Create Date: 2026-12-01 21:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'integ_0001_user_post_count'
down_revision = 'imp_0001_task_lane'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('post_count', sa.Integer(), nullable=False, server_default='0'))
    user, post = sa.table('user', sa.column('id'), sa.column('post_count')), sa.table('post', sa.column('user_id'))
    op.execute(user.update().values(post_count=sa.select(sa.func.count()).select_from(post)
                                    .where(post.c.user_id == user.c.id).scalar_subquery()))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('post_count')
