"""Extension objects only a process serving pages binds; the worker's app (WEB=False) never imports them.

Flask-WTF brings WTForms along: about 1 MB that every work horse, a fork of the worker, would carry.
"""
from flask_bootstrap import Bootstrap5
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
bootstrap = Bootstrap5()
