"""Site layouts other than the lab's: a settings_local.py that is a link to the site's configuration
directory, owned by root and readable by Pod's group, keeps its link, its owner, group and mode, and
the file it points to gets the block; a link to nothing is refused, naming the link and its target,
before any change."""

import pytest

from lablib import lab
from lablib.pod import POD_DIR, site_setting

pytestmark = pytest.mark.once

SETTINGS = POD_DIR + "/pod/custom/settings_local.py"
ELSEWHERE = "/etc/pod-site/settings_local.py"


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
