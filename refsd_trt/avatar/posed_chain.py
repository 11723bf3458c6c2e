"""Forward kinematics through the posable joints alone, for keypoint fitting.

Anny poses bones with 'local-ref' deltas: bone c's world pose is W_c = W_p K_c, where K_c holds the
delta D_c conjugated by the parent's reference orientation U_p. Writing every pose as a world rigid
motion S_c of the zero-delta pose Q_c (W_c = S_c Q_c) gives

    S_c = S_p G_c,    G_c = Q_p [E_c | t_c - E_c t_c] Q_p^-1 = [C_c D_c C_c^T | z_c - C_c D_c C_c^T z_c],

with E_c = U_p^T D_c U_p, t_c = U_p^T q_c (q_c: c's head offset from p's in the reference pose),
C_c = V_p U_p^T and z_c = Q_p t_c (V_p: Q_p's rotation) fixed by the shape. A bone whose delta is
the identity has G_c = I, so it moves exactly as its nearest posed ancestor does, and its skinning
transform T_c = S_c T0_c (T0_c: the zero-delta transform) follows from that ancestor's S. Fitting
poses only a dozen of Anny's 104 bones, so a step runs a 4-level chain of 12 joints instead of the
whole 104-bone, ~20-level chain, with the same result (to float rounding).
"""

from __future__ import annotations

import torch


class PosedChain:
    """The chain of posable bones ``joint_bones`` (indices into ``bone_parents``) at the zero-delta
    poses ``zero_poses`` (B, bones, 4, 4), rest poses ``rest_poses`` and reference orientations
    ``reference`` (bones, 3, 3) or None (the rest orientations)."""

    def __init__(self, bone_parents: list[int], joint_bones: list[int], rest_poses: torch.Tensor,
                 zero_poses: torch.Tensor, reference: torch.Tensor | None):
        parents = [int(p) for p in bone_parents]
        posed = {bone: slot for slot, bone in enumerate(joint_bones)}
        # Each bone's group: the slot of its nearest posed ancestor-or-self, or -1 (moves with the root).
        self.group = [self._nearest(bone, parents, posed) for bone in range(len(parents))]
        self.joint_parent = [self.group[parents[bone]] if bone else -1 for bone in joint_bones]
        depth = [self._depth(j) for j in range(len(joint_bones))]
        # Joints by depth, one level after another: each level composes with its parents in one product.
        self.levels = [[j for j in range(len(joint_bones)) if depth[j] == d] for d in range(max(depth) + 1)]
        order = [j for level in self.levels for j in level]
        self.unorder = torch.tensor(sorted(range(len(order)), key=order.__getitem__))
        rotation, head = rest_poses[..., :3, :3], rest_poses[..., :3, 3]
        reference = rotation if reference is None else reference.expand_as(rotation)
        parent_index = torch.tensor([parents[b] for b in joint_bones], device=rest_poses.device)
        bones = torch.tensor(joint_bones, device=rest_poses.device)
        u_p = reference[..., parent_index, :, :]  # (B, J, 3, 3)
        # The reference head offset q_c = A_p (h_c - h_p), A_p = U_p R_p^T (A_root = I): as Anny computes it.
        a_p = u_p @ rotation[..., parent_index, :, :].transpose(-1, -2)
        a_p = torch.where((parent_index == 0)[:, None, None], torch.eye(3, dtype=a_p.dtype, device=a_p.device), a_p)
        offset = (a_p @ (head[..., bones, :] - head[..., parent_index, :])[..., None])[..., 0]
        t = (u_p.transpose(-1, -2) @ offset[..., None])[..., 0]
        q_p = zero_poses[..., parent_index, :, :]
        self.frame = q_p[..., :3, :3] @ u_p.transpose(-1, -2)  # C_c (B, J, 3, 3)
        self.centre = (q_p[..., :3, :3] @ t[..., None])[..., 0] + q_p[..., :3, 3]  # z_c (B, J, 3)

    @staticmethod
    def _nearest(bone: int, parents: list[int], posed: dict[int, int]) -> int:
        while bone >= 0:
            if bone in posed:
                return posed[bone]
            bone = parents[bone] if bone else -1
        return -1

    def _depth(self, joint: int) -> int:
        return 0 if self.joint_parent[joint] < 0 else 1 + self._depth(self.joint_parent[joint])

    def motions(self, rotations: torch.Tensor) -> torch.Tensor:
        """(B, J, 3, 3) delta rotations -> (B, J + 1, 3, 4) world motions S: row J is the root's (I)."""
        turned = self.frame @ rotations @ self.frame.transpose(-1, -2)
        moved = self.centre - (turned @ self.centre[..., None])[..., 0]
        bottom = rotations.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*rotations.shape[:2], 1, 4)
        local = torch.cat([torch.cat([turned, moved[..., None]], -1), bottom], -2)  # (B, J, 4, 4)
        done: list[torch.Tensor] = []  # per level, (B, joints of the level, 4, 4)
        index: dict[int, int] = {}  # joint -> its place in its level
        for depth, level in enumerate(self.levels):
            own = local[:, level]
            if depth:  # every parent sits one level up
                own = done[-1][:, [index[self.joint_parent[j]] for j in level]] @ own
            done.append(own)
            index.update({j: i for i, j in enumerate(level)})
        world = torch.cat(done, 1)[:, self.unorder, :3]
        identity = torch.eye(3, 4, dtype=rotations.dtype, device=rotations.device).expand(world.shape[0], 1, 3, 4)
        return torch.cat([world, identity], 1)
