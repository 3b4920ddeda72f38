"""Site layouts other than the lab's: a settings_local.py that is a link to the site's configuration
directory, owned by root and readable by Pod's group, keeps its link, its owner, group and mode, and
the file it points to gets the block; a link to nothing is refused, naming the link and its target,
before any change. A site user `pod` whose home and primary group are not the lab's (/srv/pod,
pod-site): the frontal keeps the settings readable by Pod's web service or refuses, naming who would
lose them; the worker refuses a worker_group that an existing worker_user is not in, naming its
primary group, and with that group reaches the next check as that user."""

import pytest

from lablib import lab
from lablib.pod import POD_DIR, site_setting

pytestmark = pytest.mark.once

SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
ELSEWHERE = "/etc/pod-site/settings_local.py"
SITE_VENV = "/home/pod/.virtualenvs/django_pod4"


def frontal_run(command):
    result = lab.host("frontal").run(command)
    assert result.rc == 0, result.stderr
    return result.stdout


def test_a_linked_settings_file_keeps_its_link_and_a_dangling_link_is_refused():
    frontal = lab.host("frontal")
    original = frontal.file(SETTINGS).content_string
    owner = frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip()
    frontal_run("mkdir -p /etc/pod-site && mv %s %s && ln -s %s %s && chown root:pod %s && chmod 0640 %s"
                % (SETTINGS, ELSEWHERE, ELSEWHERE, SETTINGS, ELSEWHERE, ELSEWHERE))
    try:
        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal", "-e", "frontal_use_xapi_video=false")
        assert rc == 0, out[-3000:]
        assert lab.changed_by_host(out)["frontal"] >= 1, out[-3000:]
        assert frontal.file(SETTINGS).is_symlink and frontal.file(SETTINGS).linked_to == ELSEWHERE
        assert "USE_XAPI_VIDEO = False" in frontal.file(ELSEWHERE).content_string
        assert frontal_run("stat -c '%%U:%%G %%a' %s" % ELSEWHERE).strip() == "root:pod 640"
        assert site_setting("USE_XAPI_VIDEO") == "False"

        frontal_run("ln -sfn /etc/pod-site/missing.py %s" % SETTINGS)
        rc, out = lab.run_playbook("playbooks/site.yml", "-e", "frontal_use_xapi_video=false")
        assert rc != 0, out[-3000:]
        assert ("frontal_settings_file %s on frontal is a link to /etc/pod-site/missing.py, which does not exist"
                % SETTINGS) in out, out[-3000:]
        assert set(lab.changed_by_host(out).values()) == {0}, out[-3000:]
    finally:
        frontal_run("ln -sfn %s %s" % (ELSEWHERE, SETTINGS))
        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal")
        frontal_run("rm %s && mv %s %s && rmdir /etc/pod-site && chown %s %s && chmod %s %s" % (
            SETTINGS, ELSEWHERE, SETTINGS, owner.split()[0], SETTINGS, owner.split()[1], SETTINGS))
    assert rc == 0, out[-3000:]
    assert frontal.file(SETTINGS).content_string == original
    assert frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip() == owner
    assert site_setting("USE_XAPI_VIDEO") == "True"


def site_user_elsewhere(name):
    """On the lab host NAME, give the site's user pod the home /srv/pod and the primary group pod-site;
    returns the command that puts it back exactly."""
    host = lab.host(name)
    before = host.check_output("getent passwd pod; id pod")
    # usermod -d refuses a user with running processes (Pod's services): the home's field is set as vipw would.
    done = host.run("groupadd pod-site && mkdir /srv/pod && chown pod:pod-site /srv/pod && usermod -g pod-site pod && "
                    "sed -i 's#^\\(pod:[^:]*:[^:]*:[^:]*:[^:]*:\\)/home/pod:#\\1/srv/pod:#' /etc/passwd")
    assert done.rc == 0, done.stderr
    assert host.check_output("getent passwd pod").split(":")[5] == "/srv/pod"
    return before, ("usermod -g pod pod && sed -i 's#^\\(pod:[^:]*:[^:]*:[^:]*:[^:]*:\\)/srv/pod:#\\1/home/pod:#' /etc/passwd"
                    " && rm -r /srv/pod && groupdel pod-site")


def test_a_pod_user_with_another_home_and_primary_group():
    frontal = lab.host("frontal")
    owner = frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip()
    restores = []
    try:
        for name in ("frontal", "encoding"):
            restores.append((name,) + site_user_elsewhere(name))
        shared = ["-e", "worker_user=pod", "-e", "worker_pod_dir=%s" % POD_DIR, "-e", "worker_venv=%s" % SITE_VENV]

        # A root-owned file that Pod's web service (User=pod) reads as "others" only, and a worker_group pod is not in.
        frontal_run("chown root:root %s && chmod 0644 %s" % (SETTINGS, SETTINGS))
        rc, out = lab.run_playbook("playbooks/site.yml", *shared)
        assert rc != 0, out[-3000:]
        assert ("frontal_settings_file %s on frontal is root:root 0644, and Pod's web service uwsgi-pod runs as pod" % SETTINGS) in out, out[-3000:]
        assert "which reads it only through the bits of others that frontal_settings_mode o-rwx removes" in out, out[-3000:]
        assert ("worker_group pod is not a group of worker_user pod, which exists on encoding with primary group pod-site"
                " (groups: pod-site)") in out, out[-3000:]
        assert "Set worker_group: pod-site" in out, out[-3000:]
        assert set(lab.changed_by_host(out).values()) == {0}, out[-3000:]
        assert frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip() == "root:root 644"

        # Given to pod, and worker_group set to pod's: both checks pass; the worker, run as pod, meets the site's checkout.
        frontal_run("chown pod:pod-site %s" % SETTINGS)
        rc, out = lab.run_playbook("playbooks/site.yml", *shared, "-e", "worker_group=pod-site")
        assert rc != 0, out[-3000:]
        assert "which reads it only through the bits of others" not in out and "is not a group of worker_user" not in out, out[-3000:]
        assert "worker_pod_dir %s is a checkout that this role did not create" % POD_DIR in out, out[-3000:]
        assert set(lab.changed_by_host(out).values()) == {0}, out[-3000:]

        rc, out = lab.run_playbook("playbooks/site.yml", "--tags", "frontal")
        assert rc == 0, out[-3000:]
        assert lab.changed_by_host(out)["frontal"] >= 1, out[-3000:]
        assert frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip() == "pod:pod-site 640"
        assert site_setting("USE_XAPI") == "True"
    finally:
        frontal_run("chown %s %s && chmod %s %s" % (owner.split()[0], SETTINGS, owner.split()[1], SETTINGS))
        for name, before, restore in restores:
            assert lab.host(name).run(restore).rc == 0
            assert lab.host(name).check_output("getent passwd pod; id pod") == before
    assert frontal_run("stat -c '%%U:%%G %%a' %s" % SETTINGS).strip() == owner
    assert frontal.file(SETTINGS).content_string.count("USE_XAPI = True") == 1
