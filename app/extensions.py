"""Extension objects, unconfigured: `create_app` binds them to an app. The worker's app uses them too.

Flask-Migrate is not among them: it imports Alembic (~22 MB resident), which only `flask db` needs,
and every work horse is a fork of the worker's memory (see `register_migrations`). Nor are the
extensions of pages alone (CSRF, Bootstrap): they live in app.web_extensions, for the same reason."""
from flask_babel import Babel, lazy_gettext as _l
from flask_login import LoginManager
from flask_mail import Mail
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

from app import mysql as _mysql  # noqa: F401  (DATETIME(6) on MySQL/MariaDB)

# Named constraints let Alembic alter tables on SQLite (batch mode) and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
login = LoginManager()
login.login_view = "auth.login"
login.login_message = _l("Please log in to access this page.")
mail = Mail()
babel = Babel()
socketio = SocketIO()
