"""Post views."""
import sqlalchemy as sa
from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.extensions import db
from app.main import bp, keyset
from app.main.forms import EmptyForm, PostForm
from app.main.keyset import KeysetPage
from app.models import Post, User, count_new_posts


def _page(query: sa.Select) -> KeysetPage:
    """The page of posts the `before`/`after` cursor names (keyset: no COUNT, no OFFSET)."""
    return keyset.paginate(query, current_app.config["POSTS_PER_PAGE"])


@bp.route("/", methods=["GET", "POST"])
@bp.route("/index", methods=["GET", "POST"])
@login_required
def index() -> str | Response:
    """Home: publish a post, read your own."""
    form = PostForm()
    if form.validate_on_submit():
        db.session.add(Post(body=form.post.data, author=current_user))
        count_new_posts(db.session, current_user.id, 1)
        db.session.commit()
        flash(_("Your post is now live!"), "success")
        return redirect(url_for("main.index"))
    status = 400 if form.errors else 200
    posts = _page(current_user.posts.select().order_by(Post.timestamp.desc(), Post.id.desc()))
    return render_template("main/index.html", title=_("Home"), form=form, posts=posts,
                           endpoint="main.index", endpoint_args={}), status


@bp.route("/explore")
@login_required
def explore() -> str:
    """Everyone's posts, newest first."""
    posts = _page(sa.select(Post).order_by(Post.timestamp.desc(), Post.id.desc()))
    return render_template("main/index.html", title=_("Explore"), posts=posts,
                           endpoint="main.explore", endpoint_args={})


@bp.route("/user/<username>")
@login_required
def user(username: str) -> str:
    """A profile with its posts; the owner also gets the launch forms (main/_launchers.html)."""
    person = db.first_or_404(sa.select(User).where(User.username == username))
    posts = _page(person.posts.select().order_by(Post.timestamp.desc(), Post.id.desc()))
    return render_template("main/user.html", title=person.username, person=person, posts=posts,
                           form=EmptyForm(),
                           endpoint="main.user", endpoint_args={"username": username})
