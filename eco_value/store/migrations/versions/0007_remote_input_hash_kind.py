"""input files record how their content was identified: hash_kind ("sha256" | "etag+size") and the ETag

Revision ID: 0007_remote_hash_kind
Revises: 0006_actual_gep
Create Date: 2026-11-29

A remote input (``https://``, ``s3://``) larger than ``max_streamed_hash_bytes``
(raster_inputs/remote.toml) is identified by the server's ETag plus its size instead of a SHA-256;
``sha256`` is then empty. Every row stored before this revision is a local file's SHA-256
(``hash_kind = 'sha256'``, ``etag = ''``).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007_remote_hash_kind'
down_revision = '0006_actual_gep'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('input_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hash_kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='sha256'))
        batch_op.add_column(sa.Column('etag', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('input_files', schema=None) as batch_op:
        batch_op.drop_column('etag')
        batch_op.drop_column('hash_kind')
